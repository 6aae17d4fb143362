//! A model's lineage: the deletion requests it already forgot, by the
//! unlearnings it came from or by the retrain at its root. A later
//! unlearning keeps them out of its retain set; an audit's retrain must
//! exclude them all.
use crate::data::ForgetSet;
use crate::error::{Error, Result};
use crate::model::Sidecar;
use crate::model::checkpoint::{ForgetSummary, Origin};

/// How the deletion requests a user names differ from a recorded lineage.
#[derive(Debug, Default, PartialEq)]
pub struct Lineage {
    /// Recorded requests that none of the given ones is.
    pub missing: Vec<ForgetSummary>,
    /// The given requests the lineage does not record (their positions).
    pub extra: Vec<usize>,
}

/// How `given` differs from the `recorded` lineage; `None` when each
/// recorded request is one of them and each of them is recorded. One
/// recorded request may also be all the given ones left over together: a
/// retrain excludes the requests before it as one set, which its user may
/// hold one file per request.
pub fn lineage_gap(recorded: &[ForgetSummary], given: &[ForgetSet]) -> Option<Lineage> {
    let shas: Vec<String> = (given.iter())
        .map(|g| ForgetSummary::of(g).indices_sha256)
        .collect();
    let missing: Vec<ForgetSummary> = (recorded.iter())
        .filter(|r| !shas.contains(&r.indices_sha256))
        .cloned()
        .collect();
    let extra: Vec<usize> = (0..given.len())
        .filter(|&i| !recorded.iter().any(|r| r.indices_sha256 == shas[i]))
        .collect();
    if let ([joined], [_, ..]) = (missing.as_slice(), extra.as_slice())
        && union_sha256(given, &extra) == joined.indices_sha256
    {
        return None;
    }
    (!missing.is_empty() || !extra.is_empty()).then_some(Lineage { missing, extra })
}

/// The indices sha256 of the union of the sets `which` of `given`.
fn union_sha256(given: &[ForgetSet], which: &[usize]) -> String {
    let sets: Vec<&ForgetSet> = which.iter().map(|&i| &given[i]).collect();
    ForgetSummary::of(&union(&sets)).indices_sha256
}

/// One forget set of every index of `sets` (non-empty), described as the
/// first one.
pub fn union(sets: &[&ForgetSet]) -> ForgetSet {
    let mut all: Vec<i64> = (sets.iter())
        .flat_map(|s| s.indices.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    let mut set = sets[0].clone();
    if sets.len() > 1 {
        set.class = None;
        set.class_name = None;
    }
    set.size = all.len();
    set.indices = all;
    set
}

/// A recorded request as messages name it.
pub fn short_summary(s: &ForgetSummary) -> String {
    format!(
        "{} samples (indices sha256 {})",
        s.size,
        &s.indices_sha256[..12.min(s.indices_sha256.len())]
    )
}

/// The samples a model's lineage already forgot, from the deletion
/// requests `given` for them (`names` name each): every request its sidecar
/// records as forgotten (or its root retrain as excluded) must be among
/// them, so that a new unlearning keeps them out of its retain set rather
/// than training on them again.
pub fn forgotten_before(
    parent: &Sidecar,
    given: &[ForgetSet],
    names: &[String],
) -> Result<Vec<i64>> {
    if let Origin::Train {
        subset: Some(s), ..
    } = &parent.origin
        && s.kind == crate::model::checkpoint::POOL_MEMBERS
    {
        // hostile9 RF1: its retain set would be all of the training split,
        // though it trained on half a pool: no forget set describes it.
        return Err(Error::invalid(
            "checkpoint",
            format!(
                "an RMIA reference model (`amun rmia train-refs`: trained on {} members of the \
                 audit's pool, not on the training split), which no deletion request applies \
                 to; unlearn the model that was trained on the data",
                s.size
            ),
        ));
    }
    let Some(gap) = lineage_gap(&parent.forgotten(), given) else {
        let sets: Vec<&ForgetSet> = given.iter().collect();
        return Ok(match sets.is_empty() {
            true => Vec::new(),
            false => union(&sets).indices,
        });
    };
    if !gap.missing.is_empty() {
        let said: Vec<String> = gap.missing.iter().map(short_summary).collect();
        return Err(Error::setting(
            "forgotten",
            format!(
                "the model was unlearned or retrained before and its lineage forgot {} \
                 request(s) not given as {{forgotten}}: {}; a new unlearning would train on \
                 those samples again (they are in its retain set) — give each earlier deletion \
                 request as {{forgotten}} (for a retrain: the file it excluded, or the requests \
                 it excluded one file each)",
                gap.missing.len(),
                said.join(", ")
            ),
        ));
    }
    let i = gap.extra[0];
    let hint = match parent.origin {
        Origin::Import { .. } => {
            " (an imported model records what it forgot only when imported with `amun import \
             --forgotten`)"
        }
        _ => "",
    };
    Err(Error::setting(
        "forgotten",
        format!(
            "{}: the model's sidecar records no such forgotten request ({} samples); give only \
             the requests its lineage forgot{hint}",
            names.get(i).map_or("a request", String::as_str),
            given[i].size
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(indices: &[i64]) -> ForgetSet {
        ForgetSet::of_indices("mnist[train:10]".into(), 10, "file", indices.to_vec())
    }

    #[test]
    fn a_retrains_joint_exclusion_is_covered_by_its_requests_one_by_one() {
        let recorded = [
            ForgetSummary::of(&set(&[1, 2, 5])),
            ForgetSummary::of(&set(&[7])),
        ];
        let given = [set(&[5]), set(&[7]), set(&[1, 2])];
        assert_eq!(lineage_gap(&recorded, &given), None);
        let short = [set(&[5]), set(&[7])];
        let gap = lineage_gap(&recorded, &short).unwrap();
        assert_eq!((gap.missing.len(), gap.extra), (1, vec![0]));
        assert!(lineage_gap(&recorded[1..], &[set(&[7]), set(&[3])]).is_some());
    }
}
