//! `#[component]`: a trait becomes a typed client and a server
//! registration speaking Go's generated-stub bytes.

use crate::paths;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemTrait, LitStr, Pat, ReturnType, TraitItem, Type};

struct Method {
    ident: syn::Ident,
    /// The implementation takes the call's `&Request` first (deadline,
    /// metadata, trace, peer, cancellation); it never goes on the wire.
    context: bool,
    wire: String,
    args: Vec<(syn::Ident, Type)>,
    ok: Type,
    err: Type,
    retry: bool,
    route: Option<syn::Path>,
    is_async: bool,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let name = parse_name(attr)?;
    let mut tr: ItemTrait = syn::parse2(item)?;
    let Some(rt) = paths::runtime() else {
        return Err(syn::Error::new(
            Span::call_site(),
            "weft: #[component] needs weft-tokio or weft-mio as a dependency",
        ));
    };
    if !tr.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &tr.generics,
            "weft: a component trait cannot be generic (Go interfaces are not)",
        ));
    }
    let mut methods = Vec::new();
    for item in &mut tr.items {
        match item {
            TraitItem::Fn(f) => methods.push(method(f)?),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "weft: a component trait holds methods only",
                ));
            }
        }
    }
    if methods.is_empty() {
        return Err(syn::Error::new_spanned(
            &tr.ident,
            "weft: a component needs at least one method",
        ));
    }
    // The generated clients' own methods, which a component method of the
    // same name would collide with.
    const RESERVED: [&str; 4] = ["new", "with_options", "conn", "blocking"];
    if let Some(m) = methods
        .iter()
        .find(|m| RESERVED.contains(&m.ident.unraw().to_string().as_str()))
    {
        return Err(syn::Error::new_spanned(
            &m.ident,
            "weft: the generated clients have a method of this name; name the Rust \
             method otherwise and keep the Go name with `#[weft(name = \"...\")]`",
        ));
    }
    let mut wires = std::collections::BTreeSet::new();
    for m in &methods {
        if m.wire == "ready" || !wires.insert(m.wire.as_str()) {
            return Err(syn::Error::new_spanned(
                &m.ident,
                format!(
                    "weft: two methods would be `{}` on the wire (`ready` is the one \
                     every component serves); rename one or set `#[weft(name = \"...\")]`",
                    m.wire
                ),
            ));
        }
    }
    let is_async = methods[0].is_async;
    if let Some(m) = methods.iter().find(|m| m.is_async != is_async) {
        return Err(syn::Error::new_spanned(
            &m.ident,
            "weft: a component's methods are all `async fn` (served on weft-tokio) \
             or all `fn` (served on weft-mio), not a mix",
        ));
    }
    if is_async {
        desugar_async(&mut tr, &rt);
    }

    let vis = &tr.vis;
    let trait_ident = &tr.ident;
    let client = format_ident!("{}Client", trait_ident);
    let blocking = format_ident!("{}BlockingClient", trait_ident);
    let server = format_ident!("{}Server", trait_ident);
    let table = methods.iter().map(|m| {
        let wire = &m.wire;
        let full = format!("{}.{}", name.value(), wire);
        let retry = m.retry;
        quote!((#wire, #full, #retry))
    });
    let async_methods = methods
        .iter()
        .enumerate()
        .map(|(i, m)| client_method(i, m, &rt, true));
    let blocking_methods = methods
        .iter()
        .enumerate()
        .map(|(i, m)| client_method(i, m, &rt, false));
    let handlers = methods.iter().map(|m| handler(m, &rt, is_async, &name));
    let (handlers_trait, register_doc) = if is_async {
        (
            quote!(#rt::AsyncHandlers),
            "Serves every method of an implementation (Go's `AddHandlers`) on weft-tokio, and the `ready` method Go callers ask first.",
        )
    } else {
        (
            quote!(#rt::BlockingHandlers),
            "Serves every method of an implementation (Go's `AddHandlers`) on weft-mio, and the `ready` method Go callers ask first.",
        )
    };
    let client_doc = format!(
        "A typed client of [`{trait_ident}`] over an async connection (`weft_tokio::Connection`)."
    );
    let blocking_doc =
        format!("A typed client of [`{trait_ident}`] over a blocking client (`weft_mio::Client`).");
    let server_doc = format!("Serves [`{trait_ident}`] implementations.");
    let name_doc = format!("The component's name: `{}`.", name.value());

    Ok(quote! {
        #tr

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client<C> { stub: #rt::Stub<C> }

        impl<C> #client<C> {
            #[doc = #name_doc]
            pub const NAME: &'static str = #name;

            /// A client that calls over `conn`.
            pub fn new(conn: C) -> Self {
                Self { stub: #rt::Stub::new(conn, Self::NAME, &[ #(#table),* ]) }
            }

            /// Options for every call made through this client.
            pub fn with_options(mut self, options: #rt::StubOptions) -> Self {
                self.stub.set_options(options);
                self
            }

            /// The connection.
            pub fn conn(&self) -> &C {
                self.stub.conn()
            }

            /// The same methods, blocking.
            pub fn blocking(self) -> #blocking<C> {
                #blocking { stub: self.stub }
            }
        }

        impl<C: #rt::Caller> #client<C> {
            #(#async_methods)*
        }

        #[doc = #blocking_doc]
        #[derive(Clone, Debug)]
        #vis struct #blocking<C> { stub: #rt::Stub<C> }

        impl<C> #blocking<C> {
            /// A client that calls over `conn`.
            pub fn new(conn: C) -> Self {
                #client::new(conn).blocking()
            }

            /// Options for every call made through this client.
            pub fn with_options(mut self, options: #rt::StubOptions) -> Self {
                self.stub.set_options(options);
                self
            }
        }

        impl<C: #rt::BlockingCaller> #blocking<C> {
            #(#blocking_methods)*
        }

        #[doc = #server_doc]
        #[derive(Debug, Clone, Copy)]
        #vis struct #server;

        impl #server {
            #[doc = #register_doc]
            pub fn register<H, T>(handlers: &mut H, implementation: T)
            where
                H: #handlers_trait,
                T: #trait_ident + ::core::marker::Send + ::core::marker::Sync + 'static,
            {
                let imp = #rt::Arc::new(implementation);
                #(#handlers)*
                <H as #handlers_trait>::serve_ready(handlers, #name);
            }
        }
    })
}

fn parse_name(attr: TokenStream) -> syn::Result<LitStr> {
    let mut name = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("weft: unknown component option; expected `name = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    name.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "weft: #[component] needs `name = \"...\"`, the Go interface's full path \
             (for example \"github.com/acme/shop/Cart\")",
        )
    })
}

fn method(f: &mut syn::TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "weft: a component method cannot be generic: its arguments must have one encoding",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            "weft: variadic arguments: use a Vec",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => {
            return Err(syn::Error::new_spanned(
                other,
                "weft: a component method takes `&self` first",
            ));
        }
        None => {
            return Err(syn::Error::new_spanned(
                sig,
                "weft: a component method takes `&self` first",
            ));
        }
    }
    let mut args = Vec::new();
    let mut context = false;
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else {
            unreachable!("receiver only first")
        };
        let Pat::Ident(id) = &*pt.pat else {
            return Err(syn::Error::new_spanned(
                &pt.pat,
                "weft: component arguments are plain names (`user: String`), not patterns",
            ));
        };
        if is_request_ref(&pt.ty) {
            if i != 0 {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "weft: the call's `&Request` comes first, right after `&self`",
                ));
            }
            context = true;
            continue;
        }
        if matches!(peel(&pt.ty), Type::Reference(_) | Type::ImplTrait(_)) {
            return Err(syn::Error::new_spanned(
                &pt.ty,
                "weft: component arguments are owned values with an encoding \
                 (no references or `impl Trait`; only the call's `&Request` may \
                 come first)",
            ));
        }
        args.push((id.ident.clone(), (*pt.ty).clone()));
    }
    let (ok, err) = result_types(&sig.output)?;
    // `r#match` is `Match` on the wire, as Go spells it.
    let mut wire = camel(&sig.ident.unraw().to_string());
    let mut retry = true;
    let mut route = None;
    let mut error = None;
    f.attrs.retain(|a| {
        if !a.path().is_ident("weft") {
            return true;
        }
        let r = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("not_retriable") {
                retry = false;
            } else if meta.path.is_ident("name") {
                wire = meta.value()?.parse::<LitStr>()?.value();
            } else if meta.path.is_ident("route") {
                route = Some(meta.value()?.parse::<syn::Path>()?);
            } else {
                return Err(meta.error(
                    "weft: unknown method option; expected `not_retriable`, `name = \"...\"` \
                     or `route = path`",
                ));
            }
            Ok(())
        });
        if let Err(e) = r {
            error = Some(e);
        }
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    if f.default.is_some() {
        return Err(syn::Error::new_spanned(
            &f.default,
            "weft: component methods have no default body",
        ));
    }
    Ok(Method {
        ident: sig.ident.clone(),
        context,
        wire,
        args,
        ok,
        err,
        retry,
        route,
        is_async: sig.asyncness.is_some(),
    })
}

/// `&Request` (any path ending in `Request`): the call's context.
fn is_request_ref(ty: &Type) -> bool {
    let Type::Reference(r) = peel(ty) else {
        return false;
    };
    r.mutability.is_none()
        && matches!(peel(&r.elem), Type::Path(p) if p.qself.is_none()
            && p.path.segments.last().is_some_and(|s| s.ident == "Request" && s.arguments.is_empty()))
}

fn result_types(output: &ReturnType) -> syn::Result<(Type, Type)> {
    let msg = "weft: a component method returns `Result<T, E>`, where E is its \
               application error (for example `codec::ErrorList`)";
    let ReturnType::Type(_, ty) = output else {
        return Err(syn::Error::new_spanned(output, msg));
    };
    if let Type::Path(p) = peel(ty)
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let syn::PathArguments::AngleBracketed(a) = &last.arguments
        && a.args.len() == 2
        && let (syn::GenericArgument::Type(ok), syn::GenericArgument::Type(err)) =
            (&a.args[0], &a.args[1])
    {
        return Ok((ok.clone(), err.clone()));
    }
    Err(syn::Error::new_spanned(ty, msg))
}

/// A type as written, through the invisible group a `macro_rules!`
/// fragment (`$t:ty`) wraps it in, and through parentheses.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        other => other,
    }
}

/// `async fn m(..) -> R` becomes `fn m(..) -> impl Future<Output = R> + Send`
/// so that a server can run the future on any thread; implementations
/// still write `async fn`.
fn desugar_async(tr: &mut ItemTrait, rt: &TokenStream) {
    for item in &mut tr.items {
        if let TraitItem::Fn(f) = item {
            f.sig.asyncness = None;
            let out = match &f.sig.output {
                ReturnType::Type(_, ty) => quote!(#ty),
                ReturnType::Default => quote!(()),
            };
            f.sig.output = syn::parse_quote!(
                -> impl #rt::Future<Output = #out> + ::core::marker::Send
            );
        }
    }
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn client_method(index: usize, m: &Method, rt: &TokenStream, is_async: bool) -> TokenStream {
    let ident = &m.ident;
    let names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
    let types: Vec<_> = m.args.iter().map(|(_, t)| t).collect();
    let (ok, err) = (&m.ok, &m.err);
    let shard = match &m.route {
        Some(route) => quote_spanned!(route.span()=> #rt::shard_key(&#route(#(&#names),*))),
        None => quote!(0),
    };
    let doc = format!("Calls `{}`.", m.wire);
    // Spanned on each argument's type, so a type without an encoding is
    // reported where it is written.
    let encodes = m
        .args
        .iter()
        .map(|(n, t)| quote_spanned!(t.span()=> #rt::Encode::encode(&#n, &mut __weft_enc);));
    let encode = quote! {
        let mut __weft_enc = #rt::Encoder::new();
        #( #encodes )*
        let __weft_shard_key: u64 = #shard;
    };
    if is_async {
        quote! {
            #[doc = #doc]
            // Go methods may take many arguments; the caller cannot annotate
            // generated code.
            #[allow(clippy::too_many_arguments)]
            pub async fn #ident(&self, #( #names: #types ),*)
                -> ::core::result::Result<#ok, #rt::ComponentError<#err>>
            {
                #encode
                let __weft_results = self.stub.call(#index, __weft_enc.finish(), __weft_shard_key).await?;
                #rt::decode_results::<#ok, #err>(&__weft_results)
            }
        }
    } else {
        quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            pub fn #ident(&self, #( #names: #types ),*)
                -> ::core::result::Result<#ok, #rt::ComponentError<#err>>
            {
                #encode
                let __weft_results = self.stub.call_blocking(#index, __weft_enc.finish(), __weft_shard_key)?;
                #rt::decode_results::<#ok, #err>(&__weft_results)
            }
        }
    }
}

fn handler(m: &Method, rt: &TokenStream, is_async: bool, component: &LitStr) -> TokenStream {
    let ident = &m.ident;
    let wire = &m.wire;
    let names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
    let types: Vec<_> = m.args.iter().map(|(_, t)| t).collect();
    let decode = quote! {
        let mut __weft_dec = #rt::Decoder::new(&__weft_req.args);
        #( let #names: #types = #rt::decode_arg(&mut __weft_dec, #wire)?; )*
    };
    let ctx = m.context.then(|| quote!(&__weft_req,));
    if is_async {
        quote! {
            {
                let __weft_imp = imp.clone();
                #rt::AsyncHandlers::add(handlers, #component, #wire, move |__weft_req: #rt::Request| {
                    let __weft_imp = __weft_imp.clone();
                    async move {
                        #decode
                        let __weft_result =
                            #rt::until_cancelled(&__weft_req, __weft_imp.#ident(#ctx #(#names),*)).await?;
                        ::core::result::Result::Ok(#rt::encode_results(&__weft_result))
                    }
                });
            }
        }
    } else {
        quote! {
            {
                let __weft_imp = imp.clone();
                #rt::BlockingHandlers::add(handlers, #component, #wire, move |__weft_req: #rt::Request| {
                    #decode
                    let __weft_result = __weft_imp.#ident(#ctx #(#names),*);
                    ::core::result::Result::Ok(#rt::encode_results(&__weft_result))
                });
            }
        }
    }
}
