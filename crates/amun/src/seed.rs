//! Deriving independent seeds from the one seed a run records, so that each
//! random stream (init, shuffle of epoch k, forget choice, …) is fixed by the
//! recorded seed and a name, never by the order streams are used in.

/// A seed for stream `name`, item `index`, of the run seeded with `seed`.
///
/// ```
/// use amun::seed::derive;
/// assert_eq!(derive(1, "epoch", 3), derive(1, "epoch", 3));
/// assert_ne!(derive(1, "epoch", 3), derive(1, "epoch", 4));
/// ```
pub fn derive(seed: u64, name: &str, index: u64) -> u64 {
    // FNV-1a over the name, then SplitMix64 finalisation of the mix.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(splitmix(seed ^ h).wrapping_add(index))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
