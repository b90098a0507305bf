"""The sampler of docs/protocol.md ("Sampler semantics", "Randomness"),
written from the text alone in plain Python: ChaCha8, Lemire's `below`, the
Feistel block permutation, padding and dealing, the fetch shuffle and the
weighted draw. The tests check the server's streams against it, so the
documented rules are the rules, and a change of dependency that changes the
streams fails here."""

from __future__ import annotations

import bisect
import math
import struct

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF
BLOCK_DOMAIN, SHUFFLE_DOMAIN, WEIGHTED_DOMAIN = 1, 2, 3


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & MASK32


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & MASK32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK32
    s[b] = _rotl(s[b] ^ s[c], 7)


class ChaCha8:
    """ChaCha with 8 rounds: 256-bit key, 64-bit block counter from 0 (words
    12-13), 64-bit stream 0 (words 14-15); output words in order."""

    def __init__(self, key: bytes):
        assert len(key) == 32
        self.key = list(struct.unpack("<8I", key))
        self.counter = 0
        self.words: list[int] = []

    def _block(self) -> list[int]:
        constants = list(struct.unpack("<4I", b"expand 32-byte k"))
        counter = [self.counter & MASK32, self.counter >> 32]
        initial = constants + self.key + counter + [0, 0]
        s = initial[:]
        for _ in range(4):  # 4 double rounds
            _quarter(s, 0, 4, 8, 12)
            _quarter(s, 1, 5, 9, 13)
            _quarter(s, 2, 6, 10, 14)
            _quarter(s, 3, 7, 11, 15)
            _quarter(s, 0, 5, 10, 15)
            _quarter(s, 1, 6, 11, 12)
            _quarter(s, 2, 7, 8, 13)
            _quarter(s, 3, 4, 9, 14)
        self.counter += 1
        return [(x + y) & MASK32 for x, y in zip(s, initial)]

    def next_u64(self) -> int:
        if len(self.words) < 2:
            self.words += self._block()
        low, high = self.words[0], self.words[1]
        del self.words[:2]
        return low | (high << 32)


def stream(seed: int, epoch: int, domain: int, value: int) -> ChaCha8:
    return ChaCha8(struct.pack("<4Q", seed, epoch, domain, value))


def below(rng: ChaCha8, n: int) -> int:
    threshold = (1 << 64) % n
    while True:
        t = rng.next_u64() * n
        if t & MASK64 >= threshold:
            return t >> 64


def mix(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class Feistel:
    def __init__(self, m: int, rng: ChaCha8):
        self.m = m
        self.h = 1
        while 4**self.h < m:
            self.h += 1
        self.keys = [rng.next_u64() for _ in range(12)]

    def __call__(self, x: int) -> int:
        mask = (1 << self.h) - 1
        while True:
            left, right = x >> self.h, x & mask
            for key in self.keys:
                left, right = right, left ^ (mix(right ^ key) & mask)
            x = (left << self.h) | right
            if x < self.m:
                return x


def epoch_order(n: int, block_size: int, seed: int, epoch: int, mode: str) -> list[int]:
    """Steps 1-2: the cohort positions in epoch order."""
    if mode == "sequential" or n == 0:
        return list(range(n))
    rng = stream(seed, epoch, BLOCK_DOMAIN, 0)
    r = below(rng, block_size)
    s = (block_size - r) % block_size
    m = math.ceil((n + s) / block_size)
    permutation = Feistel(m, rng)
    order = []
    for k in range(m):
        j = permutation(k)
        order.extend(range(max(j * block_size - s, 0), min((j + 1) * block_size - s, n)))
    return order


def partition_stream(
    n: int,
    *,
    partition: int,
    batch_size: int = 64,
    block_size: int = 16,
    fetch_factor: int = 64,
    seed: int = 0,
    epoch: int = 0,
    partitions: int = 1,
    drop_last: bool = False,
    sampling: str = "block_shuffle",
    weights: list[float] | None = None,
    num_samples: int | None = None,
) -> list[list[tuple[int, bool]]]:
    """The batches of one partition: each a list of (cohort position, is_padding)."""
    if sampling == "weighted":
        dealt = _weighted_draws(weights, num_samples, partition, partitions, batch_size * fetch_factor, seed, epoch)
    else:
        dealt = _dealt(n, partition, partitions, block_size, seed, epoch, sampling)
    fetch_size = batch_size * fetch_factor
    batches = []
    for f, start in enumerate(range(0, len(dealt), fetch_size)):
        rows = dealt[start : start + fetch_size]
        if sampling == "block_shuffle":
            items = list(range(len(rows)))
            rng = stream(seed, epoch, SHUFFLE_DOMAIN, (partition << 32) | f)
            for i in range(len(items) - 1, 0, -1):
                j = below(rng, i + 1)
                items[i], items[j] = items[j], items[i]
            rows = [rows[i] for i in items]
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def _dealt(n, partition, partitions, block_size, seed, epoch, mode) -> list[tuple[int, bool]]:
    """Steps 3-4: padding and dealing."""
    order = epoch_order(n, block_size, seed, epoch, mode)
    per_partition = math.ceil(n / partitions)
    padded = [(order[q], False) if q < n else (order[(q - n) % n], True) for q in range(per_partition * partitions)]
    return padded[partition * per_partition : (partition + 1) * per_partition]


def _weighted_draws(weights, num_samples, partition, partitions, fetch_size, seed, epoch) -> list[tuple[int, bool]]:
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    last_positive = max(i for i, w in enumerate(weights) if w > 0)
    per_partition = math.ceil(num_samples / partitions)
    draws = []
    for f, start in enumerate(range(0, per_partition, fetch_size)):
        rng = stream(seed, epoch, WEIGHTED_DOMAIN, (partition << 32) | f)
        for _ in range(min(fetch_size, per_partition - start)):
            t = (rng.next_u64() >> 11) * 2.0**-53 * total
            draws.append((min(bisect.bisect_right(cumulative, t), last_positive), False))
    return draws
