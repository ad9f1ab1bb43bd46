#[derive(weft_tokio::Encode, weft_tokio::Decode)]
#[repr(C)]
enum Kind {
    A = 1,
}
fn main() {}
