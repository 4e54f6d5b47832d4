//! `GET /ui` and `GET /ui/{asset}`: the cluster page, embedded in the binary. The files are in
//! `src/api/ui/` (plain HTML, CSS and JS modules, no build step); the page reads only the
//! public read-only endpoints of the node serving it (`/ha/status`, `/ha/events`,
//! `/ha/leader`, `/ha/stores`), so any node shows the whole cluster.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, PathOf};

/// Only this node may supply scripts, styles and connections: the page fetches nothing from
/// elsewhere, and no inline script or style runs even if API text ever reached the DOM as markup.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'";

/// Longest asset name echoed back in a 404, so a long path does not make a long answer.
const MAX_NAME_ECHO_CHARS: usize = 64;

/// One embedded file of the page.
struct Asset {
    /// The name after `/ui/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its text.
    body: &'static str,
}

/// The page itself, also served at `/ui`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("ui/index.html"),
};

/// Every file under `/ui/`: the page, its style sheet, its icon and its JS modules.
const ASSETS: &[Asset] = &[
    INDEX,
    css("style.css", include_str!("ui/style.css")),
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("ui/icon.svg"),
    },
    js("app.js", include_str!("ui/app.js")),
    js("dom.js", include_str!("ui/dom.js")),
    js("format.js", include_str!("ui/format.js")),
    js("model.js", include_str!("ui/model.js")),
    js("live.js", include_str!("ui/live.js")),
    js("synthetic.js", include_str!("ui/synthetic.js")),
    js("summary.js", include_str!("ui/summary.js")),
    js("table.js", include_str!("ui/table.js")),
    js("timeline.js", include_str!("ui/timeline.js")),
    js("stores.js", include_str!("ui/stores.js")),
];

const fn js(name: &'static str, body: &'static str) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

const fn css(name: &'static str, body: &'static str) -> Asset {
    Asset {
        name,
        content_type: "text/css; charset=utf-8",
        body,
    }
}

/// An asset with its headers; `no-cache` so a browser revalidates and an upgraded node's page
/// never runs with a stale module of the previous version.
fn respond(asset: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}

/// Handler of `GET /ui`: the page.
pub async fn page() -> Response {
    respond(&INDEX)
}

/// Handler of `GET /ui/{asset}`: one file of the page; the JSON 404 for any other name.
pub async fn asset(PathOf(name): PathOf<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .map(respond)
        .ok_or_else(|| {
            let shown: String = name.chars().take(MAX_NAME_ECHO_CHARS).collect();
            ApiError::new(StatusCode::NOT_FOUND, format!("no UI asset {shown:?}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::to_bytes;

    fn header_of(response: &Response, name: header::HeaderName) -> String {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// Every `/ui/x` the page names and every `./x.js` a module imports.
    fn references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (marker, end) in [("\"/ui/", '"'), ("from './", '\'')] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                if let Some(len) = rest.find(end) {
                    found.push(rest[..len].to_string());
                }
            }
        }
        found
    }

    #[test]
    fn every_file_the_page_references_is_embedded() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let mut checked = 0;
        for asset in ASSETS {
            for name in references(asset.body) {
                assert!(
                    names.contains(&name.as_str()),
                    "{} references {name}, which is not in ASSETS",
                    asset.name
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "only {checked} references found: is the parser right?"
        );
    }

    #[test]
    fn the_page_loads_nothing_from_outside_and_never_writes_markup() {
        for asset in ASSETS {
            for outside in ["http://", "https://", "//cdn", "@import"] {
                // The SVG's XML namespace is a name, not a fetch.
                let allowed = asset.name == "icon.svg" && outside == "http://";
                assert!(
                    allowed || !asset.body.contains(outside),
                    "{} contains {outside}",
                    asset.name
                );
            }
            // API strings reach the DOM as text only (textContent, attributes).
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(!asset.body.contains(sink), "{} uses {sink}", asset.name);
            }
        }
    }

    #[tokio::test]
    async fn assets_carry_their_type_and_the_policy() {
        let page = page().await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        for (name, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ] {
            let response = asset(PathOf(name.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{name}: {}", e.message));
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(
                header_of(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_asset_is_the_json_404() {
        let long = "x".repeat(1000);
        for name in ["nope.js", "../Cargo.toml", "", long.as_str()] {
            let Err(error) = asset(PathOf(name.to_string())).await else {
                panic!("{name:?} was served");
            };
            assert_eq!(error.status, StatusCode::NOT_FOUND);
            assert!(error.message.len() < 100, "{}", error.message);
            let body = to_bytes(error.into_response().into_body(), 1024)
                .await
                .expect("body reads");
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            assert!(json["error"].is_string(), "{json}");
        }
    }
}
