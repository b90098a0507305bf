//! Tokenized output (`"format": "tokens"`, docs/protocol.md): per stream,
//! each output gene's token id (and Geneformer's median) from the
//! vocabulary; per minibatch, each cell's tokens computed from its stored
//! row, with scratch buffers reused from cell to cell.

mod columns;
mod geneformer;
mod key_order;
mod scgpt;
mod total_order;
mod vocabulary;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrowPrimitiveType, StringArray};
use arrow_schema::DataType;
use cellflight_schemas::{
    Padding, Tokenizer, TokenizerKind, Transform, CLS_TOKEN, EOS_TOKEN, PAD_TOKEN,
};

use crate::error::EngineError;
use crate::genes::{GeneIndex, GeneSpace};
use crate::ipc::MessageBody;
use crate::minibatch::Entries;
use crate::transform::{AsStored, RowValues, StoredValue, Transformed};
use columns::{Specials, TokenColumns};
use geneformer::{normalised, Ranking};
use scgpt::Binning;
use vocabulary::listed;
pub(crate) use vocabulary::{Vocabularies, Vocabulary};

/// Marks an output gene the vocabulary has no token for.
const NO_TOKEN: u32 = u32::MAX;

/// How a stream's cells become tokens.
#[derive(Debug)]
pub(crate) struct Tokenization {
    tokenizer: Tokenizer,
    /// Output position → token id, or [`NO_TOKEN`].
    token_ids: Vec<u32>,
    /// Output position → median (Geneformer; empty for scGPT).
    medians: Vec<f64>,
    specials: Specials,
    /// scGPT: the quantile levels of a cell's bin edges.
    levels: Vec<f64>,
    seed: u64,
    epoch: u64,
}

impl Tokenization {
    /// The tokens of the output space `genes`, whose stored genes' keys
    /// (values of the request's `gene_column`) are `keys`. Geneformer needs
    /// a positive median for every gene it tokenizes.
    pub(crate) fn new(
        tokenizer: &Tokenizer,
        vocabulary: &Vocabulary,
        keys: &dyn Array,
        genes: &GeneSpace,
        (seed, epoch): (u64, u64),
    ) -> Result<Self, EngineError> {
        let keys = arrow_cast::cast(keys, &DataType::Utf8).map_err(|_| {
            vocabulary.unusable(format!(
                "the gene_column it is keyed by is of type {}, not text",
                keys.data_type()
            ))
        })?;
        let geneformer = tokenizer.kind == TokenizerKind::Geneformer;
        let stored = genes.stored_genes();
        let (token_ids, medians) =
            output_tables(vocabulary, keys.as_string::<i32>(), &stored, geneformer)?;
        Ok(Self {
            specials: specials(tokenizer, vocabulary)?,
            levels: tokenizer.n_bins.map_or(Vec::new(), scgpt::levels),
            tokenizer: tokenizer.clone(),
            token_ids,
            medians,
            seed,
            epoch,
        })
    }

    /// The token columns of the cells `cells` (ids `cell_ids`) into `body`.
    pub(crate) fn write<'a, I, V>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        cell_ids: &[u64],
        transform: Option<Transform>,
        genes: &GeneSpace,
        body: &mut MessageBody,
    ) -> Result<(), EngineError>
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
    {
        let layout = self.tokenizer.layout();
        let mut columns = TokenColumns::new(layout, self.specials, cell_ids.len());
        match (self.tokenizer.kind, transform) {
            (TokenizerKind::Geneformer, _) => {
                let mut ranking = Ranking::default();
                for (indices, stored) in cells {
                    self.geneformer_row(indices, stored, genes, &mut ranking, &mut columns);
                }
            }
            (TokenizerKind::Scgpt, None) => {
                self.scgpt_rows::<I, V, _>(cells, cell_ids, genes, AsStored, &mut columns)
            }
            (TokenizerKind::Scgpt, Some(transform)) => {
                let transformed = Transformed::new(transform);
                self.scgpt_rows::<I, V, _>(cells, cell_ids, genes, transformed, &mut columns)
            }
        }
        for column in columns.finish() {
            body.array(column.as_ref())?;
        }
        Ok(())
    }

    /// One cell's rank-value encoding; `ranking` is scratch space.
    fn geneformer_row<G: GeneIndex, V: StoredValue>(
        &self,
        indices: &[G],
        stored: &[V],
        genes: &GeneSpace,
        ranking: &mut Ranking,
        columns: &mut TokenColumns,
    ) {
        ranking.clear();
        let total = V::total(stored);
        // A cell with total 0 has no gene to rank (and nothing to divide by).
        if total != 0.0 {
            genes.for_each_kept(indices, stored, |position, count| {
                let count = count.to_f64();
                if self.token_ids[position as usize] != NO_TOKEN && count != 0.0 {
                    let median = self.medians[position as usize];
                    ranking.push(position, normalised(count, total, median));
                }
            });
        }
        let ranked = ranking.ranked(genes.keeps_order(), self.tokenizer.max_genes() as usize);
        columns.push_row(ranked.map(|position| (self.token_ids[position as usize], 0)));
    }

    /// Each cell's gene tokens and value bins, its values as `csr` sends
    /// them (`row_values`): every non-zero gene binned by the cell's
    /// quantiles, then the genes of smallest seeded key kept if more than
    /// fit.
    fn scgpt_rows<'a, I, V, R>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        cell_ids: &[u64],
        genes: &GeneSpace,
        mut row_values: R,
        columns: &mut TokenColumns,
    ) where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
        R: RowValues<V>,
        <R::Out as ArrowPrimitiveType>::Native: StoredValue,
    {
        let mut binning = Binning::default();
        let limit = self.tokenizer.max_genes() as usize;
        for ((indices, stored), &cell_id) in cells.zip(cell_ids) {
            row_values.start_row(stored);
            binning.clear();
            genes.for_each_kept(indices, stored, |position, value| {
                if self.token_ids[position as usize] == NO_TOKEN {
                    return;
                }
                let value = row_values.value(value).to_f64();
                if value != 0.0 {
                    binning.push(position, value);
                }
            });
            if !genes.keeps_order() {
                binning.order_by_position();
            }
            binning.bin(&self.levels);
            binning.keep(limit, scgpt::cell_key(self.seed, self.epoch, cell_id));
            let token = |(position, bin): (u32, u16)| (self.token_ids[position as usize], bin);
            columns.push_row(binning.tokens().map(token));
        }
    }
}

/// Each output position's token id (or [`NO_TOKEN`]) and, for Geneformer
/// (`medians`), its median, which every gene with a token must have.
fn output_tables(
    vocabulary: &Vocabulary,
    keys: &StringArray,
    stored: &[u32],
    medians: bool,
) -> Result<(Vec<u32>, Vec<f64>), EngineError> {
    let mut token_ids = Vec::with_capacity(stored.len());
    let mut positive_medians = Vec::with_capacity(if medians { stored.len() } else { 0 });
    let mut lacking = Vec::new();
    for &gene in stored {
        let gene = gene as usize;
        let key = keys.is_valid(gene).then(|| keys.value(gene));
        let entry = key.and_then(|key| vocabulary.get(key));
        token_ids.push(entry.map_or(NO_TOKEN, |entry| entry.token_id));
        if medians {
            let median = entry.and_then(|entry| entry.median);
            if entry.is_some() && !median.is_some_and(|m| m.is_finite() && m > 0.0) {
                lacking.push(format!("{:?}", key.unwrap_or_default()));
            }
            positive_medians.push(median.unwrap_or(f64::NAN));
        }
    }
    if !lacking.is_empty() {
        return Err(vocabulary.unusable(listed(
            "geneformer needs a positive median for each gene it tokenizes, and these have none",
            &lacking,
        )));
    }
    Ok((token_ids, positive_medians))
}

/// The special tokens the tokenizer writes, each of which the vocabulary
/// must have.
fn specials(tokenizer: &Tokenizer, vocabulary: &Vocabulary) -> Result<Specials, EngineError> {
    let needed =
        |wanted: bool, key: &str, by: &str| wanted.then(|| vocabulary.special(key, by)).transpose();
    Ok(Specials {
        cls: needed(tokenizer.cls, CLS_TOKEN, "\"cls\": true")?,
        eos: needed(tokenizer.eos, EOS_TOKEN, "\"eos\": true")?,
        pad: needed(
            tokenizer.padding == Padding::MaxLength,
            PAD_TOKEN,
            "\"padding\": \"max_length\"",
        )?
        .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;
