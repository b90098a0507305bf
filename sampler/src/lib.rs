//! The deterministic sampling plan of cellflight: for one epoch, which cells
//! each stream (partition) gets, in which fetches and batches, in which
//! order. Pure logic, no I/O; O(1) memory per plan and O(fetch) per fetch,
//! whatever the cohort size.
//!
//! # Terms
//!
//! The **cohort** is the sorted, distinct cell ids a request selects, shared
//! by all its streams. The plan works on **cohort positions** `0..n`; the
//! caller maps them to cell ids through the cohort. The configuration is a
//! [`SamplerConfig`]: `batch_size` b, `block_size` B, `fetch_factor` F,
//! `seed`, `epoch`, `partitions` P, `drop_last` and `mode`. Random draws are
//! defined under [Randomness](#randomness).
//!
//! # The stream of an epoch
//!
//! 1. **Blocks** (block shuffle). Draw the offset `r = below(B)` and cut the
//!    cohort into blocks of B consecutive positions starting at r: `[0, r)`
//!    (if r > 0), `[r, r+B)`, `[r+B, r+2B)`, …, the last one possibly short.
//!    With `s = (B − r) mod B`, block `j` is `[j·B − s, (j+1)·B − s) ∩ [0, n)`
//!    and there are `m = ⌈(n + s) / B⌉` blocks. The offset, hence the block
//!    boundaries, changes from epoch to epoch.
//! 2. **Block order**. Slot `k` of the epoch holds block `π(k)`, where π is a
//!    keyed permutation of `[0, m)` (below). The **epoch order** is the
//!    concatenation of the slots' blocks: `n` cohort positions. Only the
//!    first and the last block can be short, so the epoch position where a
//!    slot starts is computed in O(1) from where those two landed (`π⁻¹(0)`
//!    and `π⁻¹(m−1)`), and so is [`Plan::epoch_cell`].
//! 3. **Padding**. The epoch order is padded to `P·L` cells,
//!    `L = ⌈n / P⌉`, by repeating it from its start: padded position
//!    `q ≥ n` is epoch position `(q − n) mod n`, flagged as padding. So there
//!    are at most P − 1 padding cells, and a cohort smaller than P still gives
//!    every partition a cell (an empty cohort gives every partition none).
//! 4. **Dealing**. Partition p gets the padded positions `[p·L, (p+1)·L)`:
//!    every partition has L cells, none twice (L ≤ n), and the same number of
//!    batches.
//! 5. **Fetches**. A partition's cells are cut into fetches of `b·F`
//!    consecutive cells (the last possibly shorter); fetch `f` holds batches
//!    `f·F ..`. A fetch's cells, in dealt order, are shuffled by
//!    Fisher–Yates with the fetch's own stream, then cut into batches of b
//!    (batch k is rows `(k mod F)·b ..` of fetch `k / F`):
//!    only the partition's last batch can be short, and `drop_last` drops it
//!    if it is. The reader reads a fetch's cells in cohort order
//!    ([`Fetch::read_order`]), which, thanks to the blocks, are about
//!    `b·F / B` runs of consecutive positions.
//! 6. **Resume**. The stream from batch `k` is the suffix of the full stream
//!    from batch k: [`Plan::fetches`] starts at fetch `k / F`, computing
//!    nothing for the fetches before it, and drops that fetch's first
//!    `k mod F` batches.
//!
//! In **sequential** mode there is no offset, no block permutation and no
//! shuffle within fetches: the epoch order is the cohort order and batches
//! follow the dealt order. Padding and dealing are the same.
//!
//! In **weighted** mode ([`Mode::Weighted`], built with [`Plan::weighted`])
//! the epoch is `num_samples` draws with replacement, position `i` drawn
//! with probability `wᵢ / Σw`. Each partition gets `L = ⌈num_samples / P⌉`
//! draws (so up to P − 1 beyond `num_samples`, none flagged as padding),
//! cut into fetches and batches as above. Fetch `f` of partition `p` makes
//! its rows' draws in order from its own stream; the rows are not shuffled
//! further. A fetch reads each drawn cell once, however often it was drawn.
//!
//! Block shuffling trades some randomness for reading speed. Cells of a
//! block stay together in the epoch order, so a cell's epoch position is
//! not uniform at the scale of a block (cells within B of the cohort's ends
//! always sit at an end of their block, and the offset moves positions by
//! whole blocks). The shuffle within a fetch scatters each block over the
//! fetch's b·F rows, so a cell's position in the *stream* is uniform to
//! within what the tests can measure once a fetch holds several blocks (the
//! defaults: 4,096 cells, 256 blocks). With B = 1 the epoch order itself is
//! a pseudo-random permutation of the cohort.
//!
//! # Randomness
//!
//! The streams are a stable function of (n, configuration), across versions
//! of this crate and of its dependencies; this section is enough to
//! reimplement them.
//!
//! **Streams.** Each use of randomness draws from ChaCha8 (the 8-round
//! ChaCha of `rand_chacha`: 256-bit key, 64-bit block counter from 0, 64-bit
//! stream/nonce 0) keyed by 32 bytes: `seed ‖ epoch ‖ domain ‖ value`, each a
//! little-endian `u64` (`ChaCha8Rng::from_seed(key)`). Draws are 64-bit:
//! two consecutive 32-bit output words, the first as the low half
//! (`RngCore::next_u64`). The uses:
//!
//! | use | domain | value |
//! |---|---|---|
//! | block offset, then the permutation's round keys | 1 | 0 |
//! | the shuffle of fetch `f` of partition `p` | 2 | `p << 32 \| f` |
//! | the weighted draws of fetch `f` of partition `p` | 3 | `p << 32 \| f` |
//!
//! **Uniform integers.** `below(n)`, uniform in `[0, n)` (Lemire's method):
//! draw x, let `t = x·n` as a 128-bit product; while `low64(t) < 2^64 mod n`,
//! draw again and recompute t; the result is `high64(t)`. (As
//! `2^64 mod n < n`, a draw with `low64(t) ≥ n` is always kept, so the
//! remainder is only computed when `low64(t) < n`: the same rule, faster.)
//!
//! **Block offset and permutation** (block shuffle with n > 0 only;
//! sequential mode draws nothing). From the domain-1 stream: first
//! `r = below(B)`, then twelve `next_u64` as the round keys `k₀ … k₁₁`. π is a
//! Feistel network on `2h` bits, h the smallest integer ≥ 1 with `4^h ≥ m`;
//! x splits into `L = x >> h`, `R = x & (2^h − 1)`; round i maps
//! `(L, R) → (R, L ⊕ (mix(R ⊕ kᵢ) & (2^h − 1)))` for i = 0 … 11; the
//! result is `L << h | R`. `mix` is the SplitMix64 finaliser:
//! `z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27;
//! z *= 0x94d049bb133111eb; z ^= z >> 31` (wrapping). `π(x)` applies the
//! network to x, then again to the result until it is below m (cycle
//! walking).
//!
//! **Weighted draw.** With `cᵢ = w₀ + … + wᵢ` summed in order in `f64`
//! and `W = c_{n−1}`: draw x, let `u = (x >> 11) · 2^−53` and `t = u · W`;
//! the result is the smallest i with `cᵢ > t` (at most the last position
//! of positive weight).
//!
//! **Fetch shuffle.** Number the fetch's cells 0..len in dealt order; from
//! the fetch's stream, for i = len − 1 down to 1, swap items i and
//! `below(i + 1)`. Output row j is the cell numbered `items[j]`.
//!
//! # Serving a plan
//!
//! Build a [`Plan`] per (request, epoch); for each stream call
//! [`Plan::fetches`]`(partition, start_batch)`. For each [`Fetch`], map
//! [`Fetch::read_order`] through the cohort, read those cells (as runs of
//! consecutive ids), then emit each [`Batch`] by taking its
//! `read_indices` from what was read, with its `is_padding` flags and its
//! index as the resume point.

mod config;
mod epoch;
mod error;
mod fetch;
mod permutation;
mod plan;
mod rng;
mod weights;

pub use config::{Mode, SamplerConfig};
pub use error::SamplerError;
pub use fetch::{Batch, Fetch, Fetches};
pub use permutation::mix;
pub use plan::{Plan, MAX_CELLS};
pub use weights::Weights;
