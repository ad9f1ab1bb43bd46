use weft_tokio::codec::ErrorList;
struct Opaque;
#[weft_tokio::component(name = "acme/Cart")]
trait Cart {
    async fn total(&self, user: Opaque) -> Result<u64, ErrorList>;
}
fn main() {}
