//! The bootstrap links as a position-dependent executable (`-no-pie`; the code stays
//! position-independent). A PIE of this size carries about 31,000 relative relocations (the
//! AWS SDK's vtables and static tables) that the loader applies, page by copied page, at
//! every cold start: a quarter of the init time before this (BENCHMARKS.md, "Cold start").
//! The cost is address randomisation of the executable image alone; the stack, heap, libc
//! and every mapping keep theirs. Go links its Linux binaries the same way by default.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
