//! Network rules that more than one program needs, each decided in one
//! place: which URLs may be reached ([`scheme`]) and which proxy the portal's
//! requests go through ([`proxy`]). Pure functions of their inputs.

pub mod proxy;
pub mod scheme;
