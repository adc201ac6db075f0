//! A column of dictionary ids in two bytes a row while every id fits, four after.

/// Dictionary ids by row. Most sites' paths, names, clients and acquisitions number
/// fewer than 65,536: their ids take two bytes a row, and the column widens to four
/// (once, for good) when an id does not fit.
#[derive(Debug, Clone)]
pub(crate) enum Narrow {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Narrow {
    fn default() -> Self {
        Self::U16(Vec::new())
    }
}

/// A run of a [`Narrow`] column, in its width.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Run<'a> {
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl Narrow {
    /// The column of `ids`, in two bytes a row when they all fit.
    pub(crate) fn from_vec(ids: Vec<u32>) -> Self {
        if ids.iter().all(|&x| x <= u32::from(u16::MAX)) {
            Self::U16(ids.into_iter().map(|x| x as u16).collect())
        } else {
            Self::U32(ids)
        }
    }

    /// The id of row `r`.
    #[inline(always)]
    pub(crate) fn get(&self, r: usize) -> u32 {
        match self {
            Self::U16(v) => u32::from(v[r]),
            Self::U32(v) => v[r],
        }
    }

    /// Rows `rows`, in the column's width.
    #[inline(always)]
    pub(crate) fn run(&self, rows: std::ops::Range<usize>) -> Run<'_> {
        match self {
            Self::U16(v) => Run::U16(&v[rows]),
            Self::U32(v) => Run::U32(&v[rows]),
        }
    }

    pub(crate) fn push(&mut self, id: u32) {
        match self {
            Self::U16(v) => match u16::try_from(id) {
                Ok(x) => v.push(x),
                Err(_) => {
                    let mut wide: Vec<u32> = Vec::with_capacity(v.capacity().max(v.len() + 1));
                    wide.extend(v.iter().map(|&x| u32::from(x)));
                    wide.push(id);
                    *self = Self::U32(wide);
                }
            },
            Self::U32(v) => v.push(id),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            Self::U16(v) => v.len(),
            Self::U32(v) => v.len(),
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        match self {
            Self::U16(v) => v.reserve(additional),
            Self::U32(v) => v.reserve(additional),
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        match self {
            Self::U16(v) => v.shrink_to_fit(),
            Self::U32(v) => v.shrink_to_fit(),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::U16(v) => v.capacity() * 2,
            Self::U32(v) => v.capacity() * 4,
        }
    }

    /// Row `k` becomes old row `perm[k]`.
    pub(crate) fn permute(&mut self, perm: &[u32]) {
        match self {
            Self::U16(v) => *v = perm.iter().map(|&p| v[p as usize]).collect(),
            Self::U32(v) => *v = perm.iter().map(|&p| v[p as usize]).collect(),
        }
    }

    /// The ids, four bytes each (as a snapshot stores them).
    pub(crate) fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::U16(v) => v.iter().map(|&x| u32::from(x)).collect(),
            Self::U32(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_once_an_id_does_not_fit_and_keeps_every_id() {
        let mut col = Narrow::default();
        for id in [0, 7, 65_535] {
            col.push(id);
        }
        assert!(matches!(col, Narrow::U16(_)));
        col.push(65_536);
        col.push(3);
        assert!(matches!(col, Narrow::U32(_)));
        assert_eq!(col.to_vec(), [0, 7, 65_535, 65_536, 3]);
        assert_eq!(
            (0..col.len()).map(|r| col.get(r)).collect::<Vec<_>>(),
            col.to_vec()
        );
        col.permute(&[4, 3, 0]);
        assert_eq!(col.to_vec(), [3, 65_536, 0]);
        assert!(matches!(Narrow::from_vec(vec![1, 65_535]), Narrow::U16(_)));
        assert!(matches!(Narrow::from_vec(vec![1, 65_536]), Narrow::U32(_)));
        let wide = Narrow::from_vec(vec![9, 70_000, 2]);
        assert!(matches!(wide.run(1..3), Run::U32([70_000, 2])));
    }
}
