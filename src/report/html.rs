//! Renders the reports as one self-contained HTML file: inline CSS, inline SVG, a few lines of
//! inline script, nothing fetched from anywhere. Every name from the registry is escaped.
//!
//! Numbers are also written raw into `data-*` attributes, so the page can be checked by a
//! program (and sorted by the script) without parsing "1.2 MiB".

use std::fmt::Write;

use super::DuScan;
use super::treemap::{Rect, squarify};
use crate::plan::{Plan, TagAction};

const MAP_WIDTH: f64 = 1000.0;
const MAP_HEIGHT: f64 = 560.0;
/// Images listed at most in the du report.
const BIGGEST_IMAGES: usize = 50;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// One rectangle of the treemap: a repository.
struct Cell<'a> {
    repository: &'a str,
    bytes: u64,
    /// The part of `bytes` that other repositories share (drawn hatched).
    shared: u64,
    tooltip: String,
}

/// A distinct, stable colour per position.
fn colour(i: usize) -> String {
    let hue = (i as f64 * 137.508) % 360.0;
    format!("hsl({hue:.0},55%,52%)")
}

fn treemap(cells: &[Cell<'_>]) -> String {
    let bounds = Rect {
        x: 0.0,
        y: 0.0,
        w: MAP_WIDTH,
        h: MAP_HEIGHT,
    };
    let values: Vec<f64> = cells.iter().map(|c| c.bytes as f64).collect();
    let rects = squarify(&values, bounds);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="treemap" viewBox="0 0 {MAP_WIDTH} {MAP_HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img">
<defs><pattern id="shared" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#fff" fill-opacity="0.35"/><line x1="0" y1="0" x2="0" y2="8" stroke="#000" stroke-opacity="0.45" stroke-width="3"/></pattern></defs>
"##
    );
    for (i, (cell, r)) in cells.iter().zip(&rects).enumerate() {
        if r.area() <= 0.0 {
            continue;
        }
        let name = escape(cell.repository);
        let _ = write!(
            svg,
            r#"<g class="cell" data-repo="{name}" data-bytes="{}" data-shared="{}"><title>{}</title><rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"#,
            cell.bytes,
            cell.shared,
            escape(&cell.tooltip),
            r.x,
            r.y,
            r.w,
            r.h,
            colour(i)
        );
        if cell.shared > 0 && cell.bytes > 0 {
            // The shared part, at the far end of the cell along its longer side.
            let fraction = cell.shared as f64 / cell.bytes as f64;
            let part = if r.w >= r.h {
                Rect {
                    x: r.x + r.w * (1.0 - fraction),
                    w: r.w * fraction,
                    ..*r
                }
            } else {
                Rect {
                    y: r.y + r.h * (1.0 - fraction),
                    h: r.h * fraction,
                    ..*r
                }
            };
            let _ = write!(
                svg,
                r#"<rect class="shared" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="url(#shared)"/>"#,
                part.x, part.y, part.w, part.h
            );
        }
        // A label only where it fits (about 7 units per character at this font size).
        if r.w > 40.0 && r.h > 18.0 {
            let fits = ((r.w - 8.0) / 7.0) as usize;
            let label: String = if cell.repository.chars().count() > fits {
                let mut s: String = cell.repository.chars().take(fits.saturating_sub(1)).collect();
                s.push('…');
                s
            } else {
                cell.repository.to_owned()
            };
            let _ = write!(
                svg,
                r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
                r.x + 4.0,
                r.y + 14.0,
                escape(&label)
            );
            if r.h > 34.0 {
                let _ = write!(
                    svg,
                    r#"<text class="size" x="{:.2}" y="{:.2}">{}</text>"#,
                    r.x + 4.0,
                    r.y + 29.0,
                    size(cell.bytes)
                );
            }
        }
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.summary { color: #444; margin: 0 0 16px; }
.treemap { width: 100%; max-width: 1000px; height: auto; background: #eee; display: block; }
.treemap text { font: 12px system-ui, sans-serif; fill: #fff; pointer-events: none; paint-order: stroke; stroke: rgba(0,0,0,.35); stroke-width: 2px; }
.treemap text.size { font-size: 11px; }
.treemap .cell { cursor: pointer; }
.treemap .cell > rect:first-of-type { stroke: #fafafa; stroke-width: 1.5; }
.treemap .cell:hover > rect:first-of-type, .treemap .cell.selected > rect:first-of-type { filter: brightness(1.15); stroke: #000; }
.legend { margin: 6px 0 0; color: #555; font-size: 13px; }
.legend .swatch { display: inline-block; width: 14px; height: 14px; vertical-align: -2px; margin-right: 4px; border: 1px solid #999; }
.legend .hatched { background: repeating-linear-gradient(45deg, #888 0 3px, #ddd 3px 8px); }
table { border-collapse: collapse; margin-top: 6px; }
th, td { padding: 3px 10px; text-align: left; border-bottom: 1px solid #e3e3e3; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; background: #f0f0f0; }
code { font-size: 12px; }
#filter { color: #555; }
"#;

/// Filters the image table by the clicked repository, and sorts tables by a clicked header.
const SCRIPT: &str = r#"
(function () {
  var selected = null;
  function show(repo) {
    selected = (selected === repo) ? null : repo;
    document.querySelectorAll('.treemap .cell').forEach(function (g) {
      g.classList.toggle('selected', g.getAttribute('data-repo') === selected);
    });
    document.querySelectorAll('tr[data-repo]').forEach(function (tr) {
      if (tr.closest('table').id === 'images') {
        tr.style.display = (selected === null || tr.getAttribute('data-repo') === selected) ? '' : 'none';
      }
    });
    var f = document.getElementById('filter');
    if (f) { f.textContent = selected === null ? '' : '(only ' + selected + '; click it again for all)'; }
  }
  document.querySelectorAll('.treemap .cell').forEach(function (g) {
    g.addEventListener('click', function () { show(g.getAttribute('data-repo')); });
  });
  document.querySelectorAll('th[data-key]').forEach(function (th) {
    th.addEventListener('click', function () {
      var table = th.closest('table'), key = th.getAttribute('data-key');
      var rows = Array.prototype.slice.call(table.querySelectorAll('tbody tr'));
      var numeric = th.classList.contains('n');
      var down = th.getAttribute('data-down') !== 'true';
      th.setAttribute('data-down', down);
      rows.sort(function (a, b) {
        var x = a.getAttribute('data-' + key), y = b.getAttribute('data-' + key);
        var c = numeric ? (Number(x) - Number(y)) : x.localeCompare(y);
        return down ? -c : c;
      });
      rows.forEach(function (r) { r.parentNode.appendChild(r); });
    });
  });
})();
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"generator\" content=\"regsweep {}\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n{body}<script>{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title)
    )
}

/// The `du --html` page: treemap of bytes per repository (shared part hatched), the table, and
/// the biggest images.
pub fn du_page(registry: &str, scan: &DuScan, generated: &str) -> String {
    let report = &scan.report;
    let mut repos: Vec<_> = report.repositories.iter().collect();
    repos.sort_by(|a, b| {
        b.total_bytes
            .cmp(&a.total_bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    let cells: Vec<Cell<'_>> = repos
        .iter()
        .map(|r| Cell {
            repository: &r.name,
            bytes: r.total_bytes,
            shared: r.shared_bytes,
            tooltip: format!(
                "{}: {} referenced, {} only here, {} shared with other repositories; {} tags, {} manifests",
                r.name,
                size(r.total_bytes),
                size(r.unique_bytes),
                size(r.shared_bytes),
                r.tags,
                r.manifests
            ),
        })
        .collect();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Storage of {}</h1>\n<p class=\"summary\" data-repositories=\"{}\" data-blobs=\"{}\" data-total=\"{}\" data-sum=\"{}\">\
         {} repositories, {} distinct blobs: <b>{}</b> stored ({} if nothing were shared). Generated {}.</p>\n",
        escape(registry),
        report.repositories.len(),
        report.blobs,
        report.total_bytes,
        report.sum_of_repositories_bytes,
        report.repositories.len(),
        report.blobs,
        size(report.total_bytes),
        size(report.sum_of_repositories_bytes),
        escape(generated)
    );
    body.push_str(&treemap(&cells));
    body.push_str(
        "<p class=\"legend\">Area: bytes a repository references. <span class=\"swatch hatched\"></span>hatched: \
         shared with other repositories (stored once, freed only when every repository drops it); solid: only \
         here. Click a repository to list its images.</p>\n",
    );
    body.push_str(
        "<h2>Repositories</h2>\n<table id=\"repositories\"><thead><tr><th data-key=\"repo\">Repository</th>\
         <th class=\"n\" data-key=\"tags\">Tags</th><th class=\"n\" data-key=\"manifests\">Manifests</th>\
         <th class=\"n\" data-key=\"total\">Total</th><th class=\"n\" data-key=\"unique\">Only here</th>\
         <th class=\"n\" data-key=\"shared\">Shared</th></tr></thead><tbody>\n",
    );
    for r in &repos {
        let name = escape(&r.name);
        let _ = writeln!(
            body,
            "<tr data-repo=\"{name}\" data-tags=\"{}\" data-manifests=\"{}\" data-total=\"{}\" data-unique=\"{}\" data-shared=\"{}\">\
             <td>{name}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            r.tags,
            r.manifests,
            r.total_bytes,
            r.unique_bytes,
            r.shared_bytes,
            if r.errors.is_empty() {
                ""
            } else {
                " ⚠ incomplete"
            },
            r.tags,
            r.manifests,
            size(r.total_bytes),
            size(r.unique_bytes),
            size(r.shared_bytes)
        );
    }
    body.push_str("</tbody></table>\n");
    let shown = scan.images.len().min(BIGGEST_IMAGES);
    let _ = write!(
        body,
        "<h2>Biggest images <span id=\"filter\"></span></h2>\n<p class=\"legend\">The {shown} largest of {} tagged images; \
         size counts each blob an image needs once (platforms, layers, config, signatures).</p>\n\
         <table id=\"images\"><thead><tr><th data-key=\"repo\">Repository</th><th>Tags</th><th>Digest</th>\
         <th class=\"n\" data-key=\"bytes\">Size</th></tr></thead><tbody>\n",
        scan.images.len()
    );
    for image in scan.images.iter().take(BIGGEST_IMAGES) {
        let repo = escape(&image.repository);
        let _ = writeln!(
            body,
            "<tr data-repo=\"{repo}\" data-digest=\"{}\" data-bytes=\"{}\"><td>{repo}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            escape(image.digest.as_str()),
            image.bytes,
            escape(&image.tags.join(", ")),
            escape(image.digest.short()),
            size(image.bytes)
        );
    }
    body.push_str("</tbody></table>\n");
    page(&format!("regsweep du: {registry}"), &body)
}

/// The `plan --html` page: treemap of the bytes the plan frees per repository and the table.
pub fn plan_page(plan: &Plan) -> String {
    let mut repos: Vec<_> = plan.repositories.iter().collect();
    repos.sort_by(|a, b| {
        b.bytes_freed
            .cmp(&a.bytes_freed)
            .then_with(|| a.repository.cmp(&b.repository))
    });
    let count =
        |r: &crate::plan::RepoPlan, action: TagAction| r.tags.iter().filter(|t| t.action == action).count();
    let cells: Vec<Cell<'_>> = repos
        .iter()
        .filter(|r| r.bytes_freed > 0)
        .map(|r| Cell {
            repository: &r.repository,
            bytes: r.bytes_freed,
            shared: 0,
            tooltip: format!(
                "{}: frees {}; deletes {} tags, untags {}, keeps {}",
                r.repository,
                size(r.bytes_freed),
                count(r, TagAction::Delete),
                count(r, TagAction::Untag),
                count(r, TagAction::Keep)
            ),
        })
        .collect();
    let t = &plan.totals;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Retention plan for {}</h1>\n<p class=\"summary\" data-repositories=\"{}\" data-freed=\"{}\">\
         {} repositories: {} tags kept, {} deleted, {} untagged, {} manifests deleted; frees <b>{}</b> \
         (after the registry's garbage collection). Planned {}.</p>\n",
        escape(&plan.registry),
        t.repositories,
        t.bytes_freed,
        t.repositories,
        t.tags_kept,
        t.tags_deleted,
        t.tags_untagged,
        t.manifests_deleted,
        size(t.bytes_freed),
        escape(&plan.created)
    );
    if cells.is_empty() {
        body.push_str("<p class=\"legend\">The plan frees nothing.</p>\n");
    } else {
        body.push_str(&treemap(&cells));
        body.push_str("<p class=\"legend\">Area: bytes the plan frees in each repository.</p>\n");
    }
    body.push_str(
        "<h2>Repositories</h2>\n<table id=\"repositories\"><thead><tr><th data-key=\"repo\">Repository</th>\
         <th>Rule</th><th class=\"n\" data-key=\"kept\">Kept</th><th class=\"n\" data-key=\"deleted\">Deleted</th>\
         <th class=\"n\" data-key=\"untagged\">Untagged</th><th class=\"n\" data-key=\"freed\">Frees</th><th>Notes</th></tr></thead><tbody>\n",
    );
    for r in &repos {
        let name = escape(&r.repository);
        let mut notes: Vec<String> = r.errors.iter().map(|e| format!("read error: {e}")).collect();
        notes.extend(r.refused.iter().map(|why| format!("refused: {why}")));
        let _ = writeln!(
            body,
            "<tr data-repo=\"{name}\" data-kept=\"{kept}\" data-deleted=\"{deleted}\" data-untagged=\"{untagged}\" data-freed=\"{}\">\
             <td>{name}</td><td>{}</td><td class=\"n\">{kept}</td><td class=\"n\">{deleted}</td><td class=\"n\">{untagged}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            r.bytes_freed,
            escape(r.rule.as_deref().unwrap_or("")),
            size(r.bytes_freed),
            escape(&notes.join("; ")),
            kept = count(r, TagAction::Keep),
            deleted = count(r, TagAction::Delete),
            untagged = count(r, TagAction::Untag),
        );
    }
    body.push_str("</tbody></table>\n");
    page(&format!("regsweep plan: {}", plan.registry), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::look::du::{RepoContent, account};
    use crate::report::ImageUsage;

    fn scan_of(names: &[&str]) -> DuScan {
        let contents = names
            .iter()
            .enumerate()
            .map(|(i, name)| RepoContent {
                name: (*name).to_owned(),
                tags: 1,
                manifests: 1,
                blobs: [
                    (Digest::sha256(b"shared"), 1000),
                    (Digest::sha256(name.as_bytes()), 100 * (i as u64 + 1)),
                ]
                .into_iter()
                .collect(),
                errors: Vec::new(),
            })
            .collect();
        DuScan {
            report: account(contents),
            images: names
                .iter()
                .map(|name| ImageUsage {
                    repository: (*name).to_owned(),
                    digest: Digest::sha256(name.as_bytes()),
                    tags: vec!["<b>v1</b>".into()],
                    bytes: 1100,
                })
                .collect(),
        }
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn names_from_the_registry_never_become_markup() {
        let html = du_page(
            "reg<x>",
            &scan_of(&["a/<img src=x onerror=alert(1)>", "b\"quote"]),
            "now",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>v1"), "{html}");
        assert!(html.contains("a/&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("data-repo=\"b&quot;quote\""));
        assert!(html.contains("<title>regsweep du: reg&lt;x&gt;</title>"));
    }

    #[test]
    fn du_page_is_self_contained_and_complete() {
        let html = du_page("registry.example", &scan_of(&["one", "two", "three"]), "now");
        // Nothing is loaded from elsewhere.
        for needle in ["src=", "href=", "@import", "url(http", "<link"] {
            assert!(!html.contains(needle), "found {needle}");
        }
        assert_eq!(html.matches("<g class=\"cell\"").count(), 3);
        // Every repository shares 1000 bytes, so each cell has a hatched part.
        assert_eq!(html.matches("class=\"shared\"").count(), 3);
        assert!(
            html.contains("data-total=\"1600\""),
            "three repos: 1000 shared + 100 + 200 + 300"
        );
        assert!(html.ends_with("</html>\n"));
    }
}
