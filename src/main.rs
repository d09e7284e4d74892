fn main() {
    println!("nvlb");
}
