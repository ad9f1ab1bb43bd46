use weft_tokio::codec::ErrorList;
#[weft_tokio::component(name = "acme/Cart")]
trait Cart {
    async fn total(&self, user: &str) -> Result<u64, ErrorList>;
}
fn main() {}
