//! The frame every page shares: head, header with navigation, main, footer.

use maud::{DOCTYPE, Markup, Render, html};

use crate::model::{Viewer, user_href};
use crate::statics::{self, CSS, JS};

/// User text on a page (a name, a title, a comment), isolated for bidi: a right-to-left
/// override or a right-to-left name inside cannot reorder the page around it. maud escapes it
/// as any text.
pub struct Bdi<'a>(pub &'a str);

impl Render for Bdi<'_> {
    fn render(&self) -> Markup {
        html! { bdi { (self.0) } }
    }
}

/// User text where no markup can go (the page title, an `aria-label`): between FIRST STRONG
/// ISOLATE and POP DIRECTIONAL ISOLATE, the plain-text form of `<bdi>`.
pub fn isolate(text: &str) -> String {
    format!("\u{2068}{text}\u{2069}")
}

/// A whole page around `body`; `title` has its user text [`isolate`]d already. `viewer` decides the navigation; the signed-in user's name rides
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
                                li { a href=(user_href(&v.name)) title="Your public page" { "@" (Bdi(&v.name)) } }
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
