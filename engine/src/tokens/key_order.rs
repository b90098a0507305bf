//! A cell's genes ordered by 64-bit keys, ties by their place in the cell.
//!
//! Sorting is most of a cell's tokenizing, and sorting plain `u64`s is
//! about twice as fast as sorting (key, place) pairs as `u128`s. So each
//! key's high bits share one `u64` with its place (the low bits, as many as
//! the places need), and the runs whose high bits tie, rare but possible,
//! are ordered by whole keys afterwards.

/// A gene of a cell: its output position and its sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keyed {
    pub(crate) position: u32,
    pub(crate) key: u64,
}

/// The order of a cell's [`Keyed`] genes; its buffer is reused from cell
/// to cell.
#[derive(Debug, Default)]
pub(crate) struct KeyOrder {
    /// Each gene's key's high bits, then its place.
    packed: Vec<u64>,
    place_bits: u32,
}

impl KeyOrder {
    /// Orders the places of `genes` by key ascending, ties by place
    /// ascending.
    pub(crate) fn sort(&mut self, genes: &[Keyed]) {
        self.place_bits = u64::BITS - (genes.len().saturating_sub(1) as u64).leading_zeros();
        let high = self.high_bits();
        self.packed.clear();
        self.packed
            .extend((genes.iter().enumerate()).map(|(place, gene)| gene.key & high | place as u64));
        self.packed.sort_unstable();
        self.order_tied_runs(genes);
    }

    /// The places of the genes last sorted, in order.
    pub(crate) fn places(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        let low = !self.high_bits();
        self.packed
            .iter()
            .map(move |packed| (packed & low) as usize)
    }

    /// The mask of the bits a key keeps in `packed`.
    fn high_bits(&self) -> u64 {
        u64::MAX.checked_shl(self.place_bits).unwrap_or(0)
    }

    /// Within each run of equal high bits, the packed genes are by place;
    /// reorders a run by (whole key, place) when that differs.
    fn order_tied_runs(&mut self, genes: &[Keyed]) {
        let high = self.high_bits();
        let whole = |packed: &u64| {
            let place = (packed & !high) as usize;
            (genes[place].key, place)
        };
        for run in (self.packed).chunk_by_mut(|a, b| a & high == b & high) {
            if run.len() > 1 && !run.is_sorted_by_key(whole) {
                run.sort_unstable_by_key(whole);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(keys: &[u64]) -> Vec<Keyed> {
        (keys.iter().enumerate())
            .map(|(place, &key)| Keyed {
                position: place as u32,
                key,
            })
            .collect()
    }

    fn order(keys: &[u64]) -> Vec<usize> {
        let mut order = KeyOrder::default();
        order.sort(&keyed(keys));
        order.places().collect()
    }

    /// The reference: a stable sort by key.
    fn expected(keys: &[u64]) -> Vec<usize> {
        let mut places: Vec<usize> = (0..keys.len()).collect();
        places.sort_by_key(|&place| keys[place]);
        places
    }

    #[test]
    fn places_are_by_key_then_by_place() {
        assert_eq!(order(&[5, 3, 5, 1, 3]), [3, 1, 4, 0, 2]);
        assert_eq!(order(&[]), Vec::<usize>::new());
        assert_eq!(order(&[9]), [0]);
    }

    #[test]
    fn keys_differing_only_in_the_bits_places_take_are_still_ordered() {
        // Eight places take the low three bits: these keys tie above them.
        let keys = [0b1_111, 0b1_000, 0b1_110, 0b1_000, 7, 0, 0b1_001, u64::MAX];
        assert_eq!(order(&keys), expected(&keys));
    }

    #[test]
    fn any_keys_are_ordered_as_a_stable_sort_orders_them() {
        let mut state = 1u64;
        for len in [2, 3, 17, 256, 1000, 4097] {
            let keys: Vec<u64> = (0..len)
                .map(|_| {
                    state = crate::tokens::scgpt::splitmix64(state);
                    // Few distinct high parts, many ties: the hard case.
                    state >> 60 << 60 | state & 0xff
                })
                .collect();
            assert_eq!(order(&keys), expected(&keys), "{len} keys");
        }
    }
}
