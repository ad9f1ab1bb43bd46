use weft_tokio::codec::ErrorList;
#[weft_tokio::component(name = "github.com/acme/shop/Cart")]
trait Cart {
    async fn new(&self) -> Result<u64, ErrorList>;
}
fn main() {}
