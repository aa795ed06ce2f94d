//! virtio devices and the virtio-mmio transport against a malicious driver: see
//! `den_vmm::fuzz::run_one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| den_vmm::fuzz::run_one(data));
