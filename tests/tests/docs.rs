//! The documentation's relative links resolve: every link of README.md and docs/*.md to a file
//! of this repository names a file that exists, and every `#anchor` names a heading of the page
//! it points into. README.md keeps the short version and links into docs/, so a moved or renamed
//! section must not leave a dead link behind.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

/// One markdown page: its links and the anchors its headings produce.
struct Page {
    links: Vec<String>,
    anchors: HashSet<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// The anchor GitHub gives a heading: its text in lower case, without punctuation other than
/// `-` and `_`, spaces turned into `-`; a repeated heading gets `-1`, `-2`… appended.
fn heading_anchor(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn parse_page(markdown: &str) -> Page {
    let mut links = Vec::new();
    let mut anchors = HashSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string());
            }
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H6 => {
                heading = Some(String::new());
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    let base = heading_anchor(&text);
                    let count = seen.entry(base.clone()).or_insert(0);
                    let anchor = if *count == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{count}")
                    };
                    *count += 1;
                    anchors.insert(anchor);
                }
            }
            _ => {}
        }
    }
    Page { links, anchors }
}

/// A link to somewhere else on the web (or an email address) is not this test's business.
fn is_external(link: &str) -> bool {
    link.contains("://") || link.starts_with("mailto:")
}

/// Every broken relative link of `page` (a file at `path`), described for the failure message.
fn broken_links(path: &Path, page: &Page) -> Vec<String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut broken = Vec::new();
    for link in page.links.iter().filter(|l| !is_external(l)) {
        let (target, anchor) = match link.split_once('#') {
            Some((target, anchor)) => (target, Some(anchor)),
            None => (link.as_str(), None),
        };
        let target_path = if target.is_empty() {
            path.to_path_buf()
        } else {
            dir.join(target)
        };
        if !target_path.exists() {
            broken.push(format!(
                "{}: link {link:?}: {} does not exist",
                path.display(),
                target_path.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let target_anchors = if target.is_empty() {
            page.anchors.clone()
        } else if target.ends_with(".md") {
            match std::fs::read_to_string(&target_path) {
                Ok(text) => parse_page(&text).anchors,
                Err(e) => {
                    broken.push(format!("{}: link {link:?}: {e}", path.display()));
                    continue;
                }
            }
        } else {
            // An anchor into a non-markdown file (a line of source) is not checked.
            continue;
        };
        if !target_anchors.contains(anchor) {
            broken.push(format!(
                "{}: link {link:?}: no heading with anchor #{anchor} in {}",
                path.display(),
                target_path.display()
            ));
        }
    }
    broken
}

fn documentation_pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.expect("docs/ is readable").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let pages = documentation_pages();
    assert!(
        pages.len() > 1,
        "README.md and at least one docs/ page: {pages:?}"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in &pages {
        let text = std::fs::read_to_string(path).expect("a documentation page is readable");
        let page = parse_page(&text);
        checked += page.links.iter().filter(|l| !is_external(l)).count();
        broken.extend(broken_links(path, &page));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 10, "only {checked} relative links found");
}

#[test]
fn the_readme_links_every_docs_page() {
    let root = repo_root();
    let readme = parse_page(&std::fs::read_to_string(root.join("README.md")).expect("README.md"));
    for path in documentation_pages()
        .iter()
        .filter(|p| !p.ends_with("README.md"))
    {
        let relative = path.strip_prefix(&root).expect("under the root");
        let relative = relative.to_string_lossy().replace('\\', "/");
        assert!(
            readme
                .links
                .iter()
                .any(|l| l.split('#').next() == Some(relative.as_str())),
            "README.md does not link {relative}"
        );
    }
}

#[test]
fn the_checker_finds_a_missing_file_and_a_missing_anchor() {
    let root = repo_root();
    let page = parse_page(
        "# Top\n\n## `[pipeline]` (optional)\n\n[ok](#pipeline-optional) [ok](docs/operate.md#watching-runs) \
         [gone](docs/nowhere.md) [bad anchor](#nowhere) [bad remote anchor](docs/operate.md#nowhere) \
         [web](https://example.com/x.md)\n",
    );
    let broken = broken_links(&root.join("README.md"), &page);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("docs/nowhere.md"), "{broken:#?}");
    assert!(broken[1].contains("#nowhere"), "{broken:#?}");
    assert!(broken[2].contains("operate.md"), "{broken:#?}");
}
