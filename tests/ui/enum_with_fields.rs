#[derive(weft_tokio::Encode)]
enum Shape {
    Circle(f64),
    Square,
}
fn main() {}
