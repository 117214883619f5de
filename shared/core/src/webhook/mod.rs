//! Webhooks: how an alert is signed (`signature.rs`), which addresses one may go to
//! (`address.rs`), and the HTTPS client that sends it to the address it checked
//! (`http.rs`).

pub mod address;
pub mod http;
pub mod signature;

pub use address::{forbidden, AddressPolicy};
pub use http::{HttpSender, Resolve, SystemResolver};
pub use signature::{sign, verify, SignatureError};
