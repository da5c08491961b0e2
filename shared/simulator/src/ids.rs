//! Salesforce-shaped record ids.
//!
//! An id is a 3-character key prefix (the object), 12 more characters (here a fixed pod
//! part and a base-62 counter), and a 3-character suffix that encodes which of the first 15
//! characters are upper case, which is what makes the 18-character form case-insensitive.

/// Base-62 digits in ASCII order, so that ids of one object sort by their counter.
const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Builds the 18-character id with key `prefix` and sequence number `n`.
pub(crate) fn make_id(prefix: &str, n: u64) -> String {
    let mut id = String::with_capacity(18);
    write_id(prefix, n, &mut id);
    id
}

/// [`make_id`] into a reused buffer (the generator's hot path: no temporary String).
pub(crate) fn write_id(prefix: &str, n: u64, id15: &mut String) {
    id15.clear();
    id15.push_str(prefix);
    // Pod and reserved characters, as in `0035g00000…`.
    id15.push_str("Hs0");
    let mut digits = [b'0'; 9];
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS[(rest % 62) as usize];
        rest /= 62;
    }
    for d in digits {
        id15.push(d as char);
    }
    let suffix = checksum_suffix(id15);
    id15.push_str(&suffix);
}

/// The 3-character case-encoding suffix of a 15-character id.
pub(crate) fn checksum_suffix(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in 0..3 {
        let mut flags = 0usize;
        for bit in 0..5 {
            if bytes
                .get(chunk * 5 + bit)
                .is_some_and(|b| b.is_ascii_uppercase())
            {
                flags |= 1 << bit;
            }
        }
        out.push(SUFFIX[flags] as char);
    }
    out
}

/// Two ids name the same record: 18-character ids compare without case, a 15-character id
/// compares case-sensitively with the first 15 characters of the other.
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    match (a.len(), b.len()) {
        (18, 18) => a.eq_ignore_ascii_case(b),
        (15, 18) => b.starts_with(a),
        (18, 15) => a.starts_with(b),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_real_shape() {
        let id = make_id("003", 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003Hs0000000001"));
        // "003Hs": H and s… only 'H' (bit 3) is upper case in the first chunk.
        assert_eq!(&id[15..], "IAA");
        assert!(make_id("003", 61) < make_id("003", 62));
        assert!(same_id(&id, &id[..15]));
        assert!(same_id(&id, &id.to_ascii_lowercase()));
        assert!(!same_id(&id, &make_id("003", 2)));
    }

    #[test]
    fn known_salesforce_suffix() {
        // A documented example: 001A0000006Vm9r → 001A0000006Vm9rIAC.
        assert_eq!(checksum_suffix("001A0000006Vm9r"), "IAC");
    }
}
