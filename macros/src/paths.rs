//! Where the generated code finds weft: whichever weft crate the user
//! depends on, under whatever name.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;

fn found(name: &str) -> Option<syn::Ident> {
    match crate_name(name).ok()? {
        // From inside a weft crate's own tests and examples the crate is
        // an extern crate under its own name (weft-proto also names itself
        // so from inside).
        FoundCrate::Itself => Some(syn::Ident::new(&name.replace('-', "_"), Span::call_site())),
        FoundCrate::Name(n) => Some(syn::Ident::new(&n, Span::call_site())),
    }
}

/// The path of the `codec` module.
pub fn codec() -> TokenStream {
    for driver in ["weft-tokio", "weft-mio"] {
        if let Some(k) = found(driver) {
            return quote!(::#k::codec);
        }
    }
    match found("weft-proto") {
        Some(k) => quote!(::#k::codec),
        None => quote!(::weft_proto::codec),
    }
}

/// The path of the component runtime, `Some` when a driver is a dependency.
pub fn runtime() -> Option<TokenStream> {
    ["weft-tokio", "weft-mio"]
        .into_iter()
        .find_map(found)
        .map(|k| quote!(::#k::component::__rt))
}
