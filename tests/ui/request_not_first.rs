use weft_tokio::codec::ErrorList;
#[weft_tokio::component(name = "acme/Cart")]
trait Cart {
    async fn total(&self, user: String, req: &weft_tokio::Request) -> Result<u64, ErrorList>;
}
fn main() {}
