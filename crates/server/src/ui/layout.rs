//! The page frame every inspector page shares: document head, skip link, navigation and the
//! bank's tabs.

use maud::{html, Markup, DOCTYPE};

/// The tabs of a bank's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Memories,
    Recall,
    Activity,
}

/// Percent-encodes one path segment or query value (bank ids may hold `:` and `@`, memory ids
/// and cursors anything).
pub fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/ui/banks/<bank>`.
pub fn bank_href(bank: &str) -> String {
    format!("/ui/banks/{}", segment(bank))
}

/// `/ui/banks/<bank>/memories/<id>`.
pub fn memory_href(bank: &str, id: &str) -> String {
    format!("{}/memories/{}", bank_href(bank), segment(id))
}

/// A whole page; `bank` adds the bank's heading and tabs; `signed_in` (a credential from the
/// sign-in form) adds the sign-out button.
pub fn page(signed_in: bool, title: &str, bank: Option<(&str, Tab)>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Astrocyte inspector" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/ui" { "Astrocyte" span class="muted" { " inspector" } }
                    nav aria-label="Site" {
                        a href="/ui" { "Banks" }
                        @if signed_in {
                            form method="post" action="/ui/logout" class="inline" {
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some((bank, tab)) = bank {
                        p class="crumbs" { a href="/ui" { "Banks" } " / " (bank) }
                        nav aria-label="Bank" class="tabs" {
                            (tab_link(&bank_href(bank), "Memories", tab == Tab::Memories))
                            (tab_link(&format!("{}/recall", bank_href(bank)), "Recall playground", tab == Tab::Recall))
                            (tab_link(&format!("{}/activity", bank_href(bank)), "Activity", tab == Tab::Activity))
                        }
                    }
                    (content)
                }
            }
        }
    }
}

fn tab_link(href: &str, label: &str, current: bool) -> Markup {
    html! {
        @if current {
            a href=(href) aria-current="page" { (label) }
        } @else {
            a href=(href) { (label) }
        }
    }
}

/// A timestamp as people read it, in UTC, in a `<time>` element.
pub fn when(at: &astrocyte_core::Timestamp) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC").to_string()) }
    }
}

/// A flash message for screen readers and eyes.
pub fn notice(text: &str) -> Markup {
    html! { p class="notice" role="status" { (text) } }
}
