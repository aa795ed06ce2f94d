//! Any bytes as an LPK package: see `den_lpk::fuzz::run_one`. At start, an empty corpus folder
//! (the first folder on the command line) gets the seed packages.
#![no_main]

libfuzzer_sys::fuzz_target!(init: den_lpk::fuzz::seed_corpus_from_args(), |data: &[u8]| den_lpk::fuzz::run_one(data));
