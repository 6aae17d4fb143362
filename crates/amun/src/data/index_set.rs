//! Sets of training-sample indices (forget, retain, held-out sets): sorted
//! and without duplicates, so membership is a binary search and the set
//! operations are one pass each.
use std::ops::Deref;

/// A set of sample indices, sorted ascending, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IndexSet(Vec<i64>);

impl IndexSet {
    /// The indices given, in any order; one given twice counts once.
    pub fn new(indices: impl IntoIterator<Item = i64>) -> IndexSet {
        let mut v: Vec<i64> = indices.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        IndexSet(v)
    }

    /// The indices given, in any order, each once; otherwise the smallest
    /// index given twice is the error.
    pub fn unique(indices: impl IntoIterator<Item = i64>) -> Result<IndexSet, i64> {
        let mut v: Vec<i64> = indices.into_iter().collect();
        v.sort_unstable();
        match v.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(w[0]),
            None => Ok(IndexSet(v)),
        }
    }

    /// Every index of a split of `n` samples: 0..n.
    pub fn all(n: usize) -> IndexSet {
        IndexSet((0..n as i64).collect())
    }

    pub fn contains(&self, i: i64) -> bool {
        self.0.binary_search(&i).is_ok()
    }

    /// The indices in `self` or `other`.
    pub fn union(&self, other: &IndexSet) -> IndexSet {
        IndexSet::new(self.0.iter().chain(&other.0).copied())
    }

    /// The indices in `self` but not in `other`.
    pub fn difference(&self, other: &IndexSet) -> IndexSet {
        let mut rest = other.0.iter().peekable();
        IndexSet(
            self.0
                .iter()
                .copied()
                .filter(|&i| {
                    while rest.next_if(|&&o| o < i).is_some() {}
                    rest.peek() != Some(&&i)
                })
                .collect(),
        )
    }

    /// The indices of a split of `n` samples not in `self` (the retain set
    /// of a forget set).
    pub fn complement(&self, n: usize) -> IndexSet {
        IndexSet::all(n).difference(self)
    }

    pub fn into_vec(self) -> Vec<i64> {
        self.0
    }
}

impl Deref for IndexSet {
    type Target = [i64];

    fn deref(&self) -> &[i64] {
        &self.0
    }
}

impl From<IndexSet> for Vec<i64> {
    fn from(s: IndexSet) -> Vec<i64> {
        s.0
    }
}

impl FromIterator<i64> for IndexSet {
    fn from_iter<I: IntoIterator<Item = i64>>(iter: I) -> IndexSet {
        IndexSet::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_and_merges_repeats_and_unique_names_the_smallest_repeat() {
        assert_eq!(&*IndexSet::new([5, 1, 3, 1, 5]), &[1, 3, 5]);
        assert_eq!(IndexSet::unique([9, 2, 7, 2, 9]), Err(2));
        assert_eq!(&*IndexSet::unique([9, 2, 7]).unwrap(), &[2, 7, 9]);
        assert!(IndexSet::new([]).is_empty());
    }

    #[test]
    fn set_operations_agree_with_their_definitions() {
        let a = IndexSet::new([0, 2, 4, 6, 8, 10]);
        let b = IndexSet::new([1, 2, 3, 8, 11]);
        assert_eq!(&*a.union(&b), &[0, 1, 2, 3, 4, 6, 8, 10, 11]);
        assert_eq!(&*a.difference(&b), &[0, 4, 6, 10]);
        assert_eq!(&*b.difference(&a), &[1, 3, 11]);
        assert_eq!(&*a.difference(&IndexSet::default()), &*a);
        assert!(IndexSet::default().difference(&a).is_empty());
        assert_eq!(&*b.complement(6), &[0, 4, 5]);
        assert_eq!(&*IndexSet::default().complement(3), &[0, 1, 2]);
        assert!(IndexSet::all(4).complement(4).is_empty());
        assert!(a.contains(8) && !a.contains(7) && !a.contains(-1));
        // The complement against a brute-force filter, on a larger set.
        let f = IndexSet::new((0..500).map(|i| (i * 7919) % 1000));
        let want: Vec<i64> = (0..1000).filter(|i| !f.contains(*i)).collect();
        assert_eq!(f.complement(1000).into_vec(), want);
    }
}
