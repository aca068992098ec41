//! Network rules that more than one program needs, each decided in one
//! place: which URLs may be reached ([`scheme`]), which proxy the portal's
//! requests go through ([`proxy`]), both pure functions of their inputs, and
//! the TLS every outgoing connection uses ([`tls`]: the provider each program
//! installs, the verifier, the client configuration).

mod mlkem;
pub mod proxy;
pub mod scheme;
pub mod tls;
