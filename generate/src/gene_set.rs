//! The distinct genes a cell has drawn so far, as a bitmap over all genes:
//! insertion is a bit test, and reading the set out in increasing order is a
//! scan of genes/64 words, cheaper than sorting a cell's ~1,500 indices.

pub(crate) struct GeneSet {
    words: Vec<u64>,
    len: u32,
}

impl GeneSet {
    pub(crate) fn new(genes: u32) -> Self {
        Self {
            words: vec![0; (genes as usize).div_ceil(64)],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Adds `gene`; a gene already present is ignored.
    #[inline]
    pub(crate) fn insert(&mut self, gene: u32) {
        let word = &mut self.words[(gene / 64) as usize];
        let bit = 1u64 << (gene % 64);
        self.len += u32::from(*word & bit == 0);
        *word |= bit;
    }

    /// Appends the genes to `out` in increasing order and empties the set.
    pub(crate) fn drain_sorted_into(&mut self, out: &mut Vec<u32>) {
        for (index, word) in self.words.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                out.push(index as u32 * 64 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_distinct_genes_in_order_and_empties() {
        let mut set = GeneSet::new(200);
        for gene in [130, 5, 64, 5, 199, 0, 63] {
            set.insert(gene);
        }
        assert_eq!(set.len(), 6);
        let mut out = vec![7];
        set.drain_sorted_into(&mut out);
        assert_eq!(out, [7, 0, 5, 63, 64, 130, 199]);
        assert_eq!(set.len(), 0);
        set.insert(1);
        let mut again = Vec::new();
        set.drain_sorted_into(&mut again);
        assert_eq!(again, [1]);
    }
}
