use weft_tokio::codec::ErrorList;
#[weft_tokio::component(name = "acme/Cart")]
trait Cart {
    #[weft(idempotent)]
    async fn total(&self, user: String) -> Result<u64, ErrorList>;
}
fn main() {}
