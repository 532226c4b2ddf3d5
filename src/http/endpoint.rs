//! One path and the methods it serves, registered together so that a method the path does not
//! serve gets 405 with an `Allow` header (RFC 9110 §15.5.6) built from the same registrations:
//! no separate list of allowed methods to keep in step.

use super::error::ApiError;
use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, ResponseError};

/// `cfg.service(endpoint("/v1/calls").get(list).post(create))`.
pub struct Endpoint {
    resource: Resource,
    methods: Vec<&'static str>,
}

pub fn endpoint(path: &str) -> Endpoint {
    Endpoint { resource: web::resource(path), methods: Vec::new() }
}

macro_rules! method {
    ($($name:ident => $route:ident, $verb:literal;)*) => {
        impl Endpoint {
            $(
                pub fn $name<F, Args>(self, handler: F) -> Self
                where
                    F: Handler<Args>,
                    Args: FromRequest + 'static,
                    F::Output: Responder + 'static,
                {
                    self.route($verb, web::$route().to(handler))
                }
            )*
        }
    };
}

method! {
    get => get, "GET";
    post => post, "POST";
    put => put, "PUT";
    delete => delete, "DELETE";
}

impl Endpoint {
    fn route(mut self, method: &'static str, route: actix_web::Route) -> Self {
        assert!(!self.methods.contains(&method), "{method} is routed twice on one path");
        self.resource = self.resource.route(route);
        self.methods.push(method);
        self
    }

    /// The resource, whose other methods answer 405 naming the ones above.
    fn into_resource(mut self) -> Resource {
        // Listed in one order whatever the order of registration (RFC 9110's order of methods).
        const ORDER: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
        self.methods.sort_by_key(|m| ORDER.iter().position(|o| o == m));
        let allow = HeaderValue::from_str(&self.methods.join(", ")).expect("method names are header-safe");
        self.resource.default_service(web::to(move |req: HttpRequest| {
            let allow = allow.clone();
            async move { method_not_allowed(&req, allow) }
        }))
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        self.into_resource().register(config)
    }
}

fn method_not_allowed(req: &HttpRequest, allow: HeaderValue) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed(format!("{} is not supported on {}", req.method(), req.path())).error_response();
    response.headers_mut().insert(header::ALLOW, allow);
    response
}
