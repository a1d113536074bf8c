//! The frame every page shares: head, header with navigation, main, footer.

use maud::{DOCTYPE, Markup, html};

use crate::model::{Viewer, user_href};
use crate::statics::{self, CSS, JS};

/// A whole page around `body`. `viewer` decides the navigation; the signed-in user's name rides
/// on `<body data-user>` so that the script can build api paths without a request.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · douyin club" }
                link rel="stylesheet" href=(statics::href(&CSS));
                script src=(statics::href(&JS)) defer {}
            }
            body data-user=[viewer.map(|v| v.name.as_str())] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav.bar aria-label="Main" {
                        a.brand href="/" { span.logo aria-hidden="true" { "▶" } "douyin club" }
                        ul.links {
                            li { a href="/" { "Feed" } }
                            @if let Some(v) = viewer {
                                li { a href="/userhome" { "My videos" } }
                                li { a href=(user_href(&v.name)) title="Your public page" { "@" (v.name) } }
                                li { button.link type="button" data-action="sign-out" { "Sign out" } }
                            } @else {
                                li { a.btn.small href="/#account" { "Sign in" } }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
                footer.foot { p { "douyin club — short videos, self-hosted." } }
            }
        }
    }
}

/// The live region a script writes action errors into.
pub fn alert_slot() -> Markup {
    html! { p.alert role="alert" aria-live="polite" hidden {} }
}
