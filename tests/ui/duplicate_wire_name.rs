use weft_tokio::codec::ErrorList;
#[weft_tokio::component(name = "github.com/acme/shop/Cart")]
trait Cart {
    async fn total(&self) -> Result<u64, ErrorList>;
    #[weft(name = "Total")]
    async fn sum(&self) -> Result<u64, ErrorList>;
}
fn main() {}
