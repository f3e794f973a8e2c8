use lockwright::pooled;

#[pooled(key = "plain-{id}", max_size = 2)]
fn plain(id: u8) -> u8 {
    id
}

#[pooled(key = "on-full-only-{id}", max_size = 2, on_full = 0)]
fn on_full_only(id: u8) -> u8 {
    id
}

fn main() {}
