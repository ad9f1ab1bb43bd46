//! `#[derive(Encode, Decode)]`.

use crate::paths;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, parse_quote};

pub fn encode(input: DeriveInput) -> TokenStream {
    expand(input, Side::Encode).unwrap_or_else(syn::Error::into_compile_error)
}

pub fn decode(input: DeriveInput) -> TokenStream {
    expand(input, Side::Decode).unwrap_or_else(syn::Error::into_compile_error)
}

#[derive(Clone, Copy)]
enum Side {
    Encode,
    Decode,
}

fn expand(mut input: DeriveInput, side: Side) -> syn::Result<TokenStream> {
    let codec = paths::codec();
    let bound: syn::Path = match side {
        Side::Encode => parse_quote!(#codec::Encode),
        Side::Decode => parse_quote!(#codec::Decode),
    };
    for p in input.generics.type_params_mut() {
        p.bounds.push(parse_quote!(#bound));
    }
    let name = &input.ident;
    let (imp, ty, wh) = input.generics.split_for_impl();
    let body = match &input.data {
        Data::Struct(s) => strukt(&s.fields, side, &codec),
        Data::Enum(e) => enumeration(&input, e, side, &codec)?,
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "weft: unions have no Service Weaver encoding; use a struct or a fieldless enum",
            ));
        }
    };
    Ok(quote! {
        #[automatically_derived]
        impl #imp #bound for #name #ty #wh { #body }
    })
}

fn strukt(fields: &Fields, side: Side, codec: &TokenStream) -> TokenStream {
    let members: Vec<syn::Member> = fields.members().collect();
    let types: Vec<&syn::Type> = fields.iter().map(|f| &f.ty).collect();
    match side {
        Side::Encode => quote! {
            fn encode(&self, enc: &mut #codec::Encoder) {
                #( #codec::Encode::encode(&self.#members, enc); )*
            }
            fn encode_zero(enc: &mut #codec::Encoder) {
                #( <#types as #codec::Encode>::encode_zero(enc); )*
            }
        },
        Side::Decode => {
            let vars: Vec<_> = (0..members.len()).map(|i| format_ident!("f{i}")).collect();
            let build = match fields {
                Fields::Named(_) => quote!(Self { #( #members: #vars ),* }),
                Fields::Unnamed(_) => quote!(Self( #( #vars ),* )),
                Fields::Unit => quote!(Self),
            };
            quote! {
                const MIN_ENCODED_LEN: usize = 0usize #( .saturating_add(<#types as #codec::Decode>::MIN_ENCODED_LEN) )*;
                fn decode(dec: &mut #codec::Decoder<'_>) -> ::core::result::Result<Self, #codec::CodecError> {
                    #( let #vars = <#types as #codec::Decode>::decode(dec)?; )*
                    ::core::result::Result::Ok(#build)
                }
            }
        }
    }
}

fn enumeration(
    input: &DeriveInput,
    e: &syn::DataEnum,
    side: Side,
    codec: &TokenStream,
) -> syn::Result<TokenStream> {
    if let Some(v) = e
        .variants
        .iter()
        .find(|v| !matches!(v.fields, Fields::Unit))
    {
        return Err(syn::Error::new_spanned(
            &v.fields,
            "weft: only fieldless enums have an encoding (Go's named integer types); \
             a variant with fields has none",
        ));
    }
    let repr = repr(input)?;
    let name = &input.ident;
    let variants: Vec<&syn::Ident> = e.variants.iter().map(|v| &v.ident).collect();
    Ok(match side {
        Side::Encode => quote! {
            fn encode(&self, enc: &mut #codec::Encoder) {
                let v: #repr = match self { #( Self::#variants => Self::#variants as #repr, )* };
                #codec::Encode::encode(&v, enc);
            }
            fn encode_zero(enc: &mut #codec::Encoder) {
                <#repr as #codec::Encode>::encode_zero(enc);
            }
        },
        Side::Decode => quote! {
            fn decode(dec: &mut #codec::Decoder<'_>) -> ::core::result::Result<Self, #codec::CodecError> {
                let v = <#repr as #codec::Decode>::decode(dec)?;
                #( if v == Self::#variants as #repr { return ::core::result::Result::Ok(Self::#variants); } )*
                ::core::result::Result::Err(#codec::CodecError::OutOfRange { ty: ::core::stringify!(#name), value: v as i128 })
            }
        },
    })
}

fn repr(input: &DeriveInput) -> syn::Result<syn::Ident> {
    const INTS: [&str; 10] = [
        "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "isize", "usize",
    ];
    let mut found = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            match meta.path.get_ident() {
                Some(id) if INTS.contains(&id.to_string().as_str()) => found = Some(id.clone()),
                // Encoded as i64 these would not be what they say (a C int
                // is 4 bytes; i128 would be cut).
                _ => {
                    return Err(meta.error(
                        "weft: an encoded enum's repr is one of i8..i64, u8..u64, isize \
                         or usize (its Go integer type), or none for Go's int",
                    ));
                }
            }
            Ok(())
        })?;
    }
    Ok(found.unwrap_or_else(|| format_ident!("i64")))
}
