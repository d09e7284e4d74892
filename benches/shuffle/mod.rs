//! A fixed-seed shuffle, so that benches look flows up in an order unrelated to the
//! one they were inserted in (which would walk the table and hide its misses).

/// A random permutation of `v` (splitmix64 and Fisher-Yates, fixed seed): lookups in
/// an order unrelated to the order the flows were inserted in.
pub fn shuffle<T>(v: &mut [T]) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}
