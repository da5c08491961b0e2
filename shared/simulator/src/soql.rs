//! A parser for the SOQL subset sfsync emits, with Salesforce-shaped errors.
//!
//! Grammar: `SELECT item (, item)* FROM Object [WHERE cond] [ORDER BY key (, key)*]
//! [LIMIT n]`, where an item is a field path (`Account.Owner.Name`) or `COUNT()`, a key is
//! `path [ASC|DESC] [NULLS FIRST|LAST]`, and a condition combines comparisons
//! (`= != <> < <= > >=`, `[NOT] IN (…)`, `LIKE`) with AND, OR, NOT and parentheses.
//! Like Salesforce, AND and OR may not be mixed at one level without parentheses.

use crate::value::{date_to_days, parse_date, parse_datetime};

/// A query error in Salesforce's REST shape: `[{"message","errorCode"}]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SoqlError {
    pub code: &'static str,
    pub message: String,
}

impl SoqlError {
    /// An error pointing at byte `pos` of `text`, formatted like Salesforce's
    /// (`\n<line>\n   ^\nERROR at Row:1:Column:12\n<detail>`).
    pub(crate) fn at(code: &'static str, text: &str, pos: usize, detail: &str) -> SoqlError {
        let pos = pos.min(text.len());
        let before = text.get(..pos).unwrap_or(text);
        let row = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        let line = text
            .get(line_start..)
            .and_then(|s| s.split('\n').next())
            .unwrap_or("");
        let caret = format!("{}^", " ".repeat(col - 1));
        SoqlError {
            code,
            message: format!("\n{line}\n{caret}\nERROR at Row:{row}:Column:{col}\n{detail}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// Milliseconds since the epoch.
    DateTime(i64),
    /// Days since the epoch.
    Date(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A field path as written, with its position in the query text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub parts: Vec<String>,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SelectItem {
    Field(Path),
    Count(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Path,
        op: CmpOp,
        value: Literal,
        value_pos: usize,
    },
    In {
        path: Path,
        negated: bool,
        values: Vec<(Literal, usize)>,
    },
    Like {
        path: Path,
        pattern: String,
        value_pos: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderItem {
    pub path: Path,
    pub ascending: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub text: String,
    pub select: Vec<SelectItem>,
    pub from: String,
    pub from_pos: usize,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Literal),
    Comma,
    LParen,
    RParen,
    Op(CmpOp),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    text: String,
}

fn lex(text: &str) -> Result<Vec<Token>, SoqlError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    let byte_at = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(text.len());
    while let Some(&(pos, c)) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            ',' => {
                i += 1;
                Tok::Comma
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            '!' if chars.get(i + 1).map(|c| c.1) == Some('=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            '<' => match chars.get(i + 1).map(|c| c.1) {
                Some('=') => {
                    i += 2;
                    Tok::Op(CmpOp::Le)
                }
                Some('>') => {
                    i += 2;
                    Tok::Op(CmpOp::Ne)
                }
                _ => {
                    i += 1;
                    Tok::Op(CmpOp::Lt)
                }
            },
            '>' => {
                if chars.get(i + 1).map(|c| c.1) == Some('=') {
                    i += 2;
                    Tok::Op(CmpOp::Ge)
                } else {
                    i += 1;
                    Tok::Op(CmpOp::Gt)
                }
            }
            '\'' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i).map(|c| c.1) {
                        None => {
                            return Err(SoqlError::at(
                                "MALFORMED_QUERY",
                                text,
                                pos,
                                "unexpected token: <EOF>",
                            ));
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let esc = chars.get(i + 1).map(|c| c.1);
                            let v = match esc {
                                Some('\'') => '\'',
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('r') => '\r',
                                Some('t') => '\t',
                                Some('b') => '\u{8}',
                                Some('f') => '\u{c}',
                                // LIKE escapes keep their backslash for the matcher.
                                Some('%') | Some('_') => {
                                    s.push('\\');
                                    esc.unwrap_or('%')
                                }
                                _ => {
                                    return Err(SoqlError::at(
                                        "MALFORMED_QUERY",
                                        text,
                                        byte_at(i),
                                        "Invalid string literal: illegal escape sequence",
                                    ));
                                }
                            };
                            s.push(v);
                            i += 2;
                        }
                        Some(ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Lit(Literal::Str(s))
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|n| n.1.is_ascii_digit())) =>
            {
                i += 1;
                while chars.get(i).is_some_and(|c| {
                    c.1.is_ascii_alphanumeric() || matches!(c.1, ':' | '.' | '+' | '-')
                }) {
                    i += 1;
                }
                let raw = text.get(pos..byte_at(i)).unwrap_or("");
                Tok::Lit(number_or_date(raw).ok_or_else(|| {
                    SoqlError::at(
                        "MALFORMED_QUERY",
                        text,
                        pos,
                        &format!("unexpected token: '{raw}'"),
                    )
                })?)
            }
            c if c.is_alphabetic() || c == '_' => {
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|c| c.1.is_alphanumeric() || c.1 == '_' || c.1 == '.')
                {
                    i += 1;
                }
                let word = text.get(pos..byte_at(i)).unwrap_or("");
                match word.to_ascii_lowercase().as_str() {
                    "true" => Tok::Lit(Literal::Bool(true)),
                    "false" => Tok::Lit(Literal::Bool(false)),
                    "null" => Tok::Lit(Literal::Null),
                    _ => Tok::Ident(word.to_string()),
                }
            }
            _ => {
                return Err(SoqlError::at(
                    "MALFORMED_QUERY",
                    text,
                    pos,
                    &format!("unexpected token: '{c}'"),
                ));
            }
        };
        let end = byte_at(i.max(start + 1));
        out.push(Token {
            tok,
            pos,
            text: text.get(pos..end).unwrap_or("").to_string(),
        });
    }
    out.push(Token {
        tok: Tok::End,
        pos: text.len(),
        text: "<EOF>".to_string(),
    });
    Ok(out)
}

/// An unquoted literal: a datetime (`2024-01-01T00:00:00Z`, `…+00:00`, `…​.000Z`), a date
/// (`2024-01-01`) or a number. A datetime without a zone is not valid SOQL.
fn number_or_date(raw: &str) -> Option<Literal> {
    if raw.contains('T') {
        return parse_datetime(raw).map(|d| Literal::DateTime(d.timestamp_millis()));
    }
    if raw.len() == 10 && raw.as_bytes().get(4) == Some(&b'-') {
        return parse_date(raw).map(|d| Literal::Date(date_to_days(d)));
    }
    if raw
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'))
    {
        return raw.parse::<f64>().ok().map(Literal::Num);
    }
    None
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with End, and `i` never passes it.
        let last = self.toks.len().saturating_sub(1);
        &self.toks[self.i.min(last)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn unexpected(&self) -> SoqlError {
        let t = self.peek();
        let shown = if t.tok == Tok::End {
            "<EOF>".to_string()
        } else {
            format!("'{}'", t.text)
        };
        SoqlError::at(
            "MALFORMED_QUERY",
            self.text,
            t.pos,
            &format!("unexpected token: {shown}"),
        )
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.is_kw(kw) {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), SoqlError> {
        if self.peek().tok == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn path(&mut self) -> Result<Path, SoqlError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Ident(w) if !is_reserved(w) => {
                let parts: Vec<String> = w.split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(self.unexpected());
                }
                self.bump();
                Ok(Path { parts, pos: t.pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<(Literal, usize), SoqlError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Lit(l) => {
                self.bump();
                Ok((l, t.pos))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_kw("SELECT")?;
        let mut select = Vec::new();
        loop {
            if self.is_kw("COUNT") {
                let pos = self.bump().pos;
                self.expect(Tok::LParen)?;
                self.expect(Tok::RParen)?;
                select.push(SelectItem::Count(pos));
            } else {
                select.push(SelectItem::Field(self.path()?));
            }
            if self.peek().tok == Tok::Comma {
                self.bump();
            } else {
                break;
            }
        }
        self.expect_kw("FROM")?;
        let from_tok = self.peek().clone();
        let from = match &from_tok.tok {
            Tok::Ident(w) if !is_reserved(w) && !w.contains('.') => w.clone(),
            _ => return Err(self.unexpected()),
        };
        self.bump();
        let mut filter = None;
        if self.is_kw("WHERE") {
            self.bump();
            filter = Some(self.expr()?);
        }
        let mut order_by = Vec::new();
        if self.is_kw("ORDER") {
            self.bump();
            self.expect_kw("BY")?;
            loop {
                let path = self.path()?;
                let mut ascending = true;
                if self.is_kw("ASC") {
                    self.bump();
                } else if self.is_kw("DESC") {
                    self.bump();
                    ascending = false;
                }
                // Salesforce's default: nulls first ascending, last descending.
                let mut nulls_first = ascending;
                if self.is_kw("NULLS") {
                    self.bump();
                    if self.is_kw("FIRST") {
                        nulls_first = true;
                    } else if self.is_kw("LAST") {
                        nulls_first = false;
                    } else {
                        return Err(self.unexpected());
                    }
                    self.bump();
                }
                order_by.push(OrderItem {
                    path,
                    ascending,
                    nulls_first,
                });
                if self.peek().tok == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.is_kw("LIMIT") {
            self.bump();
            match self.peek().tok {
                Tok::Lit(Literal::Num(n)) if n >= 0.0 && n.fract() == 0.0 => {
                    self.bump();
                    limit = Some(n as usize);
                }
                _ => return Err(self.unexpected()),
            }
        }
        if self.peek().tok != Tok::End {
            return Err(self.unexpected());
        }
        Ok(Query {
            text: self.text.to_string(),
            select,
            from,
            from_pos: from_tok.pos,
            filter,
            order_by,
            limit,
        })
    }

    fn expr(&mut self) -> Result<Expr, SoqlError> {
        let first = self.unary()?;
        let mut items = vec![first];
        let mut connective: Option<bool> = None; // Some(true) = AND
        loop {
            let is_and = if self.is_kw("AND") {
                true
            } else if self.is_kw("OR") {
                false
            } else {
                break;
            };
            if connective.is_some_and(|c| c != is_and) {
                // Salesforce requires parentheses between AND and OR.
                return Err(self.unexpected());
            }
            connective = Some(is_and);
            self.bump();
            items.push(self.unary()?);
        }
        Ok(match connective {
            None => items.pop().unwrap_or(Expr::And(Vec::new())),
            Some(true) => Expr::And(items),
            Some(false) => Expr::Or(items),
        })
    }

    fn unary(&mut self) -> Result<Expr, SoqlError> {
        if self.is_kw("NOT") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.bump();
            let e = self.expr()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        let path = self.path()?;
        if self.is_kw("IN") || self.is_kw("NOT") {
            let negated = self.is_kw("NOT");
            self.bump();
            if negated {
                self.expect_kw("IN")?;
            }
            self.expect(Tok::LParen)?;
            let mut values = vec![self.literal()?];
            while self.peek().tok == Tok::Comma {
                self.bump();
                values.push(self.literal()?);
            }
            self.expect(Tok::RParen)?;
            return Ok(Expr::In {
                path,
                negated,
                values,
            });
        }
        if self.is_kw("LIKE") {
            self.bump();
            let (lit, value_pos) = self.literal()?;
            let Literal::Str(pattern) = lit else {
                return Err(SoqlError::at(
                    "MALFORMED_QUERY",
                    self.text,
                    value_pos,
                    "LIKE requires a quoted string",
                ));
            };
            return Ok(Expr::Like {
                path,
                pattern,
                value_pos,
            });
        }
        let op = match self.peek().tok {
            Tok::Op(op) => op,
            _ => return Err(self.unexpected()),
        };
        self.bump();
        let (value, value_pos) = self.literal()?;
        Ok(Expr::Cmp {
            path,
            op,
            value,
            value_pos,
        })
    }
}

fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "select", "from", "where", "and", "or", "not", "order", "by", "limit", "asc", "desc",
        "nulls", "in", "like", "group", "having", "offset", "typeof",
    ];
    RESERVED.contains(&word.to_ascii_lowercase().as_str())
}

/// Parses one SOQL statement.
pub(crate) fn parse(text: &str) -> Result<Query, SoqlError> {
    let toks = lex(text)?;
    let mut p = Parser { text, toks, i: 0 };
    p.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_shape() {
        let q = parse(
            "SELECT Id, SystemModstamp, account.name FROM contact WHERE (SystemModstamp > 2024-01-01T00:00:00Z OR (SystemModstamp = 2024-01-01T00:00:00.000+00:00 AND Id > '003\\'x')) AND IsDeleted = false ORDER BY SystemModstamp ASC, Id ASC LIMIT 10",
        );
        let q = match q {
            Ok(q) => q,
            Err(e) => panic!("{}", e.message),
        };
        assert_eq!(q.from, "contact");
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.order_by.len(), 2);
        let Some(Expr::And(parts)) = &q.filter else {
            panic!("expected AND at top: {:?}", q.filter)
        };
        assert_eq!(parts.len(), 2);
        let Expr::Or(inner) = &parts[0] else {
            panic!("expected OR")
        };
        let Expr::And(pair) = &inner[1] else {
            panic!("expected AND")
        };
        assert_eq!(
            pair[1],
            Expr::Cmp {
                path: Path {
                    parts: vec!["Id".to_string()],
                    pos: pair_pos(&pair[1])
                },
                op: CmpOp::Gt,
                value: Literal::Str("003'x".to_string()),
                value_pos: value_pos(&pair[1]),
            }
        );
    }

    fn pair_pos(e: &Expr) -> usize {
        match e {
            Expr::Cmp { path, .. } => path.pos,
            _ => 0,
        }
    }

    fn value_pos(e: &Expr) -> usize {
        match e {
            Expr::Cmp { value_pos, .. } => *value_pos,
            _ => 0,
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "SELECT FROM Contact",
            "SELECT Id FROM Contact WHERE",
            "SELECT Id FROM Contact WHERE a = 1 AND b = 2 OR c = 3",
            "SELECT Id FROM Contact WHERE SystemModstamp > 2024-01-01T00:00:00",
            "SELECT Id FROM Contact LIMIT",
            "SELECT Id FROM Contact GROUP BY Id",
            "SELECT Id FROM Contact WHERE Name = 'open",
            "DELETE FROM Contact",
        ] {
            let err = parse(bad).err();
            assert_eq!(err.map(|e| e.code), Some("MALFORMED_QUERY"), "{bad}");
        }
    }

    #[test]
    fn error_points_at_the_token() {
        let err = parse("SELECT Id FROM Contact WHERE").err();
        let msg = err.map(|e| e.message).unwrap_or_default();
        assert_eq!(
            msg,
            "\nSELECT Id FROM Contact WHERE\n                            ^\nERROR at Row:1:Column:29\nunexpected token: <EOF>"
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            number_or_date("2024-01-01"),
            parse_date("2024-01-01").map(|d| Literal::Date(date_to_days(d)))
        );
        assert_eq!(number_or_date("-2.5"), Some(Literal::Num(-2.5)));
        assert!(matches!(
            number_or_date("2024-01-01T00:00:00.000Z"),
            Some(Literal::DateTime(_))
        ));
        assert_eq!(number_or_date("12abc"), None);
    }
}
