//! Both tokenizers on hand-made rows, through the per-stream tables.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type};
use arrow_array::ArrayRef;
use cellflight_schemas::{Padding, Tokenizer, TokenizerKind};

use super::*;
use crate::genes::GeneSpace;

/// A tokenization of `n` output genes whose gene j has token 100 + j and
/// median 1, except those in `no_token`; `<cls>` is 1, `<eos>` 2, `<pad>` 0.
fn tokenization(kind: TokenizerKind, max_length: u32, n: u32, no_token: &[u32]) -> Tokenization {
    let tokenizer = Tokenizer {
        kind,
        vocabulary: "v".into(),
        max_length,
        cls: false,
        eos: false,
        padding: Padding::None,
        n_bins: (kind == TokenizerKind::Scgpt).then_some(5),
    };
    let token_ids = (0..n)
        .map(|j| {
            if no_token.contains(&j) {
                NO_TOKEN
            } else {
                100 + j
            }
        })
        .collect();
    Tokenization {
        levels: tokenizer.n_bins.map_or(Vec::new(), scgpt::levels),
        tokenizer,
        token_ids,
        medians: vec![1.0; n as usize],
        specials: Specials {
            cls: None,
            eos: None,
            pad: 0,
        },
        seed: 7,
        epoch: 1,
    }
}

/// Rows of stored (gene, count) entries.
type Rows<'a> = &'a [&'a [(u16, u16)]];

fn split(row: &[(u16, u16)]) -> (Vec<u16>, Vec<u16>) {
    row.iter().copied().unzip()
}

/// Each row's (input_ids, values), padding included when padded.
fn tokens_of(t: &Tokenization, finished: Vec<ArrayRef>) -> Vec<(Vec<u32>, Vec<u16>)> {
    let layout = t.tokenizer.layout();
    let rows = |column: &ArrayRef| -> Vec<ArrayRef> {
        match layout.padded {
            true => column
                .as_fixed_size_list()
                .iter()
                .map(Option::unwrap)
                .collect(),
            false => column.as_list::<i32>().iter().map(Option::unwrap).collect(),
        }
    };
    let ids = rows(&finished[0]);
    let bins = match layout.values {
        true => rows(&finished[1]),
        false => Vec::new(),
    };
    (0..ids.len())
        .map(|r| {
            let row_ids = ids[r].as_primitive::<UInt32Type>().values().to_vec();
            let row_bins = bins.get(r).map_or(Vec::new(), |b| {
                b.as_primitive::<UInt16Type>().values().to_vec()
            });
            (row_ids, row_bins)
        })
        .collect()
}

fn geneformer(t: &Tokenization, genes: &GeneSpace, rows: Rows) -> Vec<Vec<u32>> {
    let mut columns = TokenColumns::new(t.tokenizer.layout(), t.specials, rows.len());
    let mut ranking = Ranking::default();
    for row in rows {
        let (indices, counts) = split(row);
        t.geneformer_row(&indices, &counts, genes, &mut ranking, &mut columns);
    }
    tokens_of(t, columns.finish())
        .into_iter()
        .map(|(ids, _)| ids)
        .collect()
}

fn scgpt(
    t: &Tokenization,
    genes: &GeneSpace,
    rows: Rows,
    cell_ids: &[u64],
) -> Vec<(Vec<u32>, Vec<u16>)> {
    let mut columns = TokenColumns::new(t.tokenizer.layout(), t.specials, rows.len());
    let split: Vec<_> = rows.iter().map(|&row| split(row)).collect();
    let cells = split.iter().map(|(i, v)| (i.as_slice(), v.as_slice()));
    t.scgpt_rows::<UInt16Type, UInt16Type, _>(cells, cell_ids, genes, AsStored, &mut columns);
    tokens_of(t, columns.finish())
}

#[test]
fn geneformer_ranks_by_normalised_value_ties_by_position() {
    let mut t = tokenization(TokenizerKind::Geneformer, 10, 5, &[]);
    t.medians = vec![1.0, 2.0, 1.0, 0.5, 1.0];
    // Values ∝ count / median: 4, 2, 2, 2, 0 (gene 4 not stored).
    let ids = geneformer(&t, &GeneSpace::all(5), &[&[(0, 4), (1, 4), (2, 2), (3, 1)]]);
    assert_eq!(ids, [vec![100, 101, 102, 103]]);
}

#[test]
fn geneformer_keeps_the_first_max_length_and_drops_genes_without_a_token() {
    let t = tokenization(TokenizerKind::Geneformer, 2, 4, &[1]);
    let ids = geneformer(&t, &GeneSpace::all(4), &[&[(0, 1), (1, 9), (2, 5), (3, 3)]]);
    assert_eq!(ids, [vec![102, 103]], "gene 1 has no token; two kept");
}

#[test]
fn geneformer_tokenizes_only_the_output_space_in_its_positions() {
    // Output space: stored genes 2 and 0, in that order.
    let genes = GeneSpace::from_stored(&[2, 0], 3);
    let mut t = tokenization(TokenizerKind::Geneformer, 10, 2, &[]);
    t.medians = vec![1.0, 4.0];
    // Stored gene 1 is outside the space (no token); position 0 (stored
    // 2: 3 / median 1) outranks position 1 (stored 0: 8 / median 4).
    let ids = geneformer(&t, &genes, &[&[(0, 8), (1, 100), (2, 3)]]);
    assert_eq!(ids, [vec![100, 101]]);
}

#[test]
fn an_all_zero_cell_gives_only_its_special_tokens_padded_and_masked() {
    let mut t = tokenization(TokenizerKind::Geneformer, 4, 3, &[]);
    t.tokenizer.cls = true;
    t.tokenizer.eos = true;
    t.tokenizer.padding = Padding::MaxLength;
    t.specials = Specials {
        cls: Some(1),
        eos: Some(2),
        pad: 0,
    };
    let ids = geneformer(
        &t,
        &GeneSpace::all(3),
        &[&[], &[(1, 5), (0, 0)], &[(0, 1), (1, 2), (2, 3)]],
    );
    assert_eq!(ids[0], [1, 2, 0, 0]);
    assert_eq!(ids[1], [1, 101, 2, 0], "an explicit zero is not a gene");
    assert_eq!(
        ids[2],
        [1, 102, 101, 2],
        "max_length 4 holds 2 genes beside cls and eos"
    );
}

#[test]
fn scgpt_bins_each_cell_by_its_own_quantiles() {
    let t = tokenization(TokenizerKind::Scgpt, 10, 6, &[5]);
    // n_bins 5: edges at the 0, 1/3, 2/3 and 1 quantiles of 1, 2, 4, 8.
    // np.quantile([1, 2, 4, 8], [0, 1/3, 2/3, 1]) = 1, 2, 4, 8: bins 1 to 4.
    let rows: Rows = &[&[(0, 8), (1, 1), (3, 4), (4, 2), (5, 9)], &[(2, 3), (3, 3)]];
    let tokens = scgpt(&t, &GeneSpace::all(6), rows, &[0, 1]);
    assert_eq!(tokens[0], (vec![100, 101, 103, 104], vec![4, 1, 3, 2]));
    assert_eq!(
        tokens[1],
        (vec![102, 103], vec![4, 4]),
        "equal values: all edges equal, the top bin"
    );
}

#[test]
fn scgpt_gives_cls_and_pads_the_value_0() {
    let mut t = tokenization(TokenizerKind::Scgpt, 4, 2, &[]);
    t.tokenizer.cls = true;
    t.tokenizer.padding = Padding::MaxLength;
    t.specials.cls = Some(1);
    let tokens = scgpt(&t, &GeneSpace::all(2), &[&[(1, 7)]], &[0]);
    assert_eq!(tokens[0], (vec![1, 101, 0, 0], vec![0, 4, 0, 0]));
}

#[test]
fn scgpt_keeps_the_genes_of_smallest_seeded_key_in_output_order() {
    let t = tokenization(TokenizerKind::Scgpt, 3, 8, &[]);
    let row: Vec<(u16, u16)> = (0..8).map(|g| (g, g + 1)).collect();
    let tokens = scgpt(
        &t,
        &GeneSpace::all(8),
        &[row.as_slice(), row.as_slice()],
        &[5, 6],
    );
    let cell_key = scgpt::cell_key(7, 1, 5);
    let mut by_key: Vec<u32> = (0..8).collect();
    by_key.sort_by_key(|&p| scgpt::gene_key(cell_key, p));
    let mut kept = by_key[..3].to_vec();
    kept.sort();
    let ids: Vec<u32> = kept.iter().map(|p| 100 + p).collect();
    assert_eq!(tokens[0].0, ids);
    // Bins come from all eight values: value p + 1 over edges 1, 3⅓, 5⅔, 8.
    let bins: Vec<u16> = kept
        .iter()
        .map(|&p| [1, 1, 1, 2, 2, 3, 3, 4][p as usize])
        .collect();
    assert_eq!(tokens[0].1, bins);
    assert_ne!(tokens[0].0, tokens[1].0, "another cell, another choice");
}

#[test]
fn scgpt_orders_a_named_gene_space_by_output_position() {
    let genes = GeneSpace::from_stored(&[2, 0], 3);
    let t = tokenization(TokenizerKind::Scgpt, 10, 2, &[]);
    let tokens = scgpt(&t, &genes, &[&[(0, 5), (2, 1)]], &[0]);
    assert_eq!(tokens[0].0, [100, 101], "stored 2 is position 0");
}
