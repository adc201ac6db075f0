//! The event id column in 10 bytes a row rather than 16.

/// The first 48 bits of a UUIDv7: its Unix millisecond.
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// The time part a UUIDv7 made at `ms` has, in place in the id.
fn time_part(ms: i64) -> u128 {
    u128::from(ms as u64 & TIME_MASK) << 80
}

/// Event ids by row. A UUIDv7 made for its event (as the pipeline makes them) holds
/// the event's millisecond in its first 48 bits, which the time column holds
/// already: rows keep the other 80 bits, and the first 48 only as their difference
/// (XOR) from the row's time, in a column that exists only once some id differs
/// (ids made elsewhere, the nil id).
#[derive(Debug, Default, Clone)]
pub(crate) struct Ids {
    low: Vec<u64>,
    mid: Vec<u16>,
    /// Empty, or one per row: the first 48 bits XOR the row's time part.
    odd: Vec<u64>,
}

impl Ids {
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.low.reserve(additional);
        self.mid.reserve(additional);
        if !self.odd.is_empty() {
            self.odd.reserve(additional);
        }
    }

    /// The id of row `r`, whose time is `ms`.
    #[inline]
    pub(crate) fn get(&self, r: usize, ms: i64) -> u128 {
        let rest = u128::from(self.mid[r]) << 64 | u128::from(self.low[r]);
        let odd = self.odd.get(r).map_or(0, |&o| u128::from(o) << 80);
        (time_part(ms) ^ odd) | rest
    }

    /// Adds the id of a row at `ms`.
    pub(crate) fn push(&mut self, id: u128, ms: i64) {
        let odd = ((id ^ time_part(ms)) >> 80) as u64;
        if odd != 0 || !self.odd.is_empty() {
            // The rows before (all of their time, when the column is new) hold 0.
            self.odd.resize(self.low.len(), 0);
            self.odd.push(odd);
        }
        self.low.push(id as u64);
        self.mid.push((id >> 64) as u16);
    }

    /// Row `k` becomes old row `perm[k]`.
    pub(crate) fn permute(&mut self, perm: &[u32]) {
        fn apply<T: Copy>(col: &mut Vec<T>, perm: &[u32]) {
            *col = perm.iter().map(|&p| col[p as usize]).collect();
        }
        apply(&mut self.low, perm);
        apply(&mut self.mid, perm);
        if !self.odd.is_empty() {
            apply(&mut self.odd, perm);
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.low.shrink_to_fit();
        self.mid.shrink_to_fit();
        self.odd.shrink_to_fit();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.low.capacity() * 8 + self.mid.capacity() * 2 + self.odd.capacity() * 8
    }

    /// The three columns (`odd` empty when every id's time part is its row's).
    pub(crate) fn parts(&self) -> (&[u64], &[u16], &[u64]) {
        (&self.low, &self.mid, &self.odd)
    }

    /// The ids of `parts` for `rows` rows; `None` when their lengths do not fit.
    pub(crate) fn from_parts(
        low: Vec<u64>,
        mid: Vec<u16>,
        odd: Vec<u64>,
        rows: usize,
    ) -> Option<Self> {
        let odd_ok = odd.is_empty() || odd.len() == rows;
        let in_range = odd.iter().all(|&o| o <= TIME_MASK);
        (low.len() == rows && mid.len() == rows && odd_ok && in_range).then_some(Self {
            low,
            mid,
            odd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_whatever_their_time_part() {
        let ms = 1_772_535_693_292i64;
        let v7 = time_part(ms) | 0x7abc_0123_4567_89ab_cdefu128;
        let mut first_odd = Ids::default();
        first_odd.push(7, ms);
        first_odd.push(v7, ms);
        assert_eq!([first_odd.get(0, ms), first_odd.get(1, ms)], [7, v7]);
        let mut ids = Ids::default();
        ids.push(v7, ms);
        assert!(
            ids.odd.is_empty(),
            "a v7 id made at its time needs no time part"
        );
        assert_eq!(ids.get(0, ms), v7);
        for (id, at) in [(0u128, ms), (u128::MAX, -1), (v7, ms + 1), (7, 0)] {
            ids.push(id, at);
        }
        let got: Vec<u128> = [(0, ms), (1, ms), (2, -1), (3, ms + 1), (4, 0)]
            .iter()
            .map(|&(r, t)| ids.get(r, t))
            .collect();
        assert_eq!(got, [v7, 0, u128::MAX, v7, 7]);
        ids.permute(&[4, 0]);
        assert_eq!([ids.get(0, 0), ids.get(1, ms)], [7, v7]);
        let (l, m, o) = ids.parts();
        let back = Ids::from_parts(l.to_vec(), m.to_vec(), o.to_vec(), 2).expect("parts");
        assert_eq!([back.get(0, 0), back.get(1, ms)], [7, v7]);
        assert!(Ids::from_parts(vec![1], vec![], vec![], 1).is_none());
        assert!(Ids::from_parts(vec![1], vec![1], vec![1 << 48], 1).is_none());
    }
}
