#[weft_tokio::component(name = "acme/Cart")]
trait Cart {
    async fn total(&self, user: String) -> u64;
}
fn main() {}
