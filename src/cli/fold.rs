//! Folds signature and attestation tags (`sha256-<hex>.sig`, `.att`, `.sbom` and the bare
//! `sha256-<hex>` referrers index) under the row of the image they sign in human tables: each is
//! 70-odd characters and would otherwise widen the whole table. `--json` still lists every tag.

use crate::digest::Digest;

use super::output::plural;

/// A row of a table that may fold referrer tags.
pub struct Row<'a> {
    pub tag: &'a str,
    /// The manifest the tag points at, when known.
    pub digest: Option<&'a Digest>,
    /// Words that must stay visible for a folded tag, e.g. the plan's action; empty for none.
    pub label: &'a str,
}

/// A row that stays in the table, with the tag name to show and a note about the referrer tags
/// folded under it.
#[derive(Debug, PartialEq, Eq)]
pub struct Shown {
    pub index: usize,
    pub tag: String,
    pub note: Option<String>,
}

/// Which rows stay, in their order. A referrer tag folds under the first row whose digest is its
/// subject; one whose subject is not in the table stays, shortened.
pub fn fold(rows: &[Row]) -> Vec<Shown> {
    let subject_row = |subject: &Digest| {
        rows.iter()
            .position(|row| row.digest == Some(subject) && Digest::from_referrer_tag(row.tag).is_none())
    };
    // Per subject row: (label, kind) of each folded tag, in table order.
    let mut folded: Vec<Vec<(&str, &str)>> = vec![Vec::new(); rows.len()];
    let mut stays = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        match Digest::from_referrer_tag(row.tag) {
            Some((subject, suffix)) => match subject_row(&subject) {
                Some(under) => folded[under].push((row.label, suffix)),
                None => stays.push((index, short_referrer_tag(&subject, suffix))),
            },
            None => stays.push((index, row.tag.to_owned())),
        }
    }
    stays
        .into_iter()
        .map(|(index, tag)| Shown {
            index,
            tag,
            note: note(&folded[index]),
        })
        .collect()
}

/// `sha256-e989d10e6a5c….sig`: enough of the digest to tell it apart.
fn short_referrer_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}-{}…{suffix}", subject.algorithm(), subject.short())
}

/// `↳ 1 signature, 1 attestation`, with each label after the kinds it applies to.
fn note(folded: &[(&str, &str)]) -> Option<String> {
    if folded.is_empty() {
        return None;
    }
    let mut labels: Vec<&str> = Vec::new();
    for (label, _) in folded {
        if !labels.contains(label) {
            labels.push(label);
        }
    }
    let groups: Vec<String> = labels
        .iter()
        .map(|label| {
            let mut kinds: Vec<(&str, usize)> = Vec::new();
            for (_, suffix) in folded.iter().filter(|(l, _)| l == label) {
                match kinds.iter_mut().find(|(kind, _)| kind == suffix) {
                    Some((_, count)) => *count += 1,
                    None => kinds.push((suffix, 1)),
                }
            }
            let counts: Vec<String> = kinds
                .iter()
                .map(|(suffix, count)| {
                    let (one, many) = kind_words(suffix);
                    plural(count, one, many)
                })
                .collect();
            if label.is_empty() {
                counts.join(", ")
            } else {
                format!("{} ({label})", counts.join(", "))
            }
        })
        .collect();
    Some(format!("↳ {}", groups.join("; ")))
}

fn kind_words(suffix: &str) -> (&'static str, &'static str) {
    match suffix {
        ".sig" => ("signature", "signatures"),
        ".att" => ("attestation", "attestations"),
        ".sbom" => ("SBOM", "SBOMs"),
        "" => ("referrers index", "referrers indexes"),
        _ => ("referrer tag", "referrer tags"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: &str) -> Digest {
        Digest::parse(&format!("sha256:{}", byte.repeat(32))).unwrap()
    }

    #[test]
    fn referrer_tags_fold_under_their_subject() {
        let image = digest("e9");
        let other = digest("77");
        let sig = format!("{}.sig", image.referrers_tag());
        let att = format!("{}.att", image.referrers_tag());
        let index = image.referrers_tag();
        let orphan = format!("{}.sig", other.referrers_tag());
        let signature = digest("51");
        let rows = [
            Row {
                tag: &index,
                digest: Some(&signature),
                label: "keep",
            },
            Row {
                tag: "latest",
                digest: Some(&image),
                label: "keep",
            },
            Row {
                tag: &orphan,
                digest: Some(&signature),
                label: "delete",
            },
            Row {
                tag: &sig,
                digest: Some(&signature),
                label: "keep",
            },
            Row {
                tag: &att,
                digest: Some(&signature),
                label: "delete",
            },
            Row {
                tag: "v1",
                digest: Some(&image),
                label: "keep",
            },
        ];
        assert_eq!(
            fold(&rows),
            [
                Shown {
                    index: 1,
                    tag: "latest".into(),
                    note: Some("↳ 1 referrers index, 1 signature (keep); 1 attestation (delete)".into()),
                },
                Shown {
                    index: 2,
                    tag: "sha256-777777777777….sig".into(),
                    note: None,
                },
                Shown {
                    index: 5,
                    tag: "v1".into(),
                    note: None,
                },
            ]
        );
    }

    #[test]
    fn counts_without_labels() {
        let image = digest("e9");
        let sig = format!("{}.sig", image.referrers_tag());
        let rows = [
            Row {
                tag: "v1",
                digest: Some(&image),
                label: "",
            },
            Row {
                tag: &sig,
                digest: None,
                label: "",
            },
            Row {
                tag: &sig,
                digest: None,
                label: "",
            },
        ];
        assert_eq!(fold(&rows)[0].note.as_deref(), Some("↳ 2 signatures"));
    }
}
