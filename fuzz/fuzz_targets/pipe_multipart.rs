#![no_main]
//! See `delayed_response_fuzz::targets::pipe_multipart` and `fuzz/README.md`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    delayed_response_fuzz::targets::pipe_multipart(data);
});
