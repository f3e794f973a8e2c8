//! Functions that are not `async` but return a future: `-> impl Future<Output = T>`, or
//! `-> Pin<Box<dyn Future<Output = T> + ...>>` (what `#[async_trait]` turns an `async fn` into).
//! Their body only builds the future, so the lock must be taken inside the returned future and
//! held until it completes (or is dropped): `expand.rs` wraps it.

use syn::{GenericArgument, PathArguments, ReturnType, Type, TypeParamBound};

/// How the function hands its future back.
pub enum Shape {
    /// `impl Future<Output = T>`: an `async` block is returned as is.
    Impl,
    /// `Pin<Box<dyn Future<Output = T>>>`: an `async` block is boxed and pinned.
    Boxed,
}

/// The future's shape and its `Output` type, if `ret` spells out a future.
pub fn output_of(ret: &ReturnType) -> Option<(Shape, Type)> {
    let ReturnType::Type(_, ty) = ret else {
        return None;
    };
    match &**ty {
        Type::ImplTrait(impl_trait) => future_output(&impl_trait.bounds).map(|t| (Shape::Impl, t)),
        Type::Path(path) => {
            let pin = path.path.segments.last().filter(|s| s.ident == "Pin")?;
            let boxed = single_type_arg(&pin.arguments)?;
            let Type::Path(boxed) = boxed else {
                return None;
            };
            let boxed = boxed.path.segments.last().filter(|s| s.ident == "Box")?;
            match single_type_arg(&boxed.arguments)? {
                Type::TraitObject(object) => {
                    future_output(&object.bounds).map(|t| (Shape::Boxed, t))
                }
                _ => None,
            }
        }
        Type::Paren(paren) => output_of(&ReturnType::Type(
            Default::default(),
            Box::new((*paren.elem).clone()),
        )),
        _ => None,
    }
}

fn single_type_arg(arguments: &PathArguments) -> Option<&Type> {
    let PathArguments::AngleBracketed(args) = arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// `T` of a `Future<Output = T>` bound among `bounds`.
fn future_output<'a>(bounds: impl IntoIterator<Item = &'a TypeParamBound>) -> Option<Type> {
    bounds.into_iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last().filter(|s| s.ident == "Future")?;
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}
