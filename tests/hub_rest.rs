//! The REST reads: current members, presence history with Link pagination, time, CORS, auth.

mod common;

use common::Sim;
use rollcall::hub::{ApiKey, Capability, HubConfig, RestRequest, RestResponse};
use serde_json::{json, Value};

const ROOM: &str = "room/with slash";
const ROOM_PATH: &str = "room%2Fwith%20slash";

fn get(sim: &mut Sim, url: &str) -> RestResponse {
    get_with(sim, url, None)
}

fn get_with(sim: &mut Sim, url: &str, authorization: Option<&str>) -> RestResponse {
    let request = RestRequest {
        method: "GET",
        url,
        authorization,
        accept: Some("application/json"),
        origin: None,
        body: &[],
    };
    sim.hub.handle_rest(sim.now, &request).expect("a hub path")
}

fn body(response: &RestResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

fn header<'a>(response: &'a RestResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// The `next` link's target, as ably-js would follow it (the query of `./history?…`).
fn next_link(response: &RestResponse) -> Option<String> {
    let links = header(response, "link")?;
    links.split(',').find_map(|l| {
        let l = l.trim();
        let (url, rel) = l.split_once(">; rel=\"")?;
        (rel == "next\"").then(|| {
            url.trim_start_matches('<')
                .trim_start_matches("./")
                .to_owned()
        })
    })
}

/// Reads history from `url` page by page, following the `next` links as ably-js does (only the
/// link's own parameters); returns the events' data and how many pages it took.
fn pages_of_history(sim: &mut Sim, url: &str) -> (Vec<String>, usize) {
    let mut url = url.to_owned();
    let mut data = Vec::new();
    for pages in 1..=10 {
        let response = get(sim, &url);
        assert_eq!(response.status, 200);
        assert!(header(&response, "link").unwrap().contains("rel=\"first\""));
        data.extend(
            body(&response)
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["data"].as_str().unwrap().to_owned()),
        );
        match next_link(&response) {
            Some(next) => url = format!("/channels/{ROOM_PATH}/presence/{next}"),
            None => return (data, pages),
        }
    }
    panic!("more than 10 pages");
}

fn populated() -> Sim {
    let mut sim = Sim::new(HubConfig::default());
    for n in 0..5 {
        let (peer, _) = sim.join(&format!("clientId=user-{n}"), ROOM);
        sim.presence(
            peer,
            ROOM,
            0,
            json!([{"action": 2, "data": format!("d{n}")}]),
        );
        sim.advance(10);
        sim.presence(
            peer,
            ROOM,
            1,
            json!([{"action": 4, "data": format!("u{n}")}]),
        );
        sim.advance(10);
    }
    sim
}

#[test]
fn time_is_the_hub_clock() {
    let mut sim = Sim::new(HubConfig::default());
    let response = get(&mut sim, "/time");
    assert_eq!(response.status, 200);
    assert_eq!(body(&response), json!([sim.now]));
}

#[test]
fn presence_lists_the_members_with_filters_and_pages() {
    let mut sim = populated();
    let response = get(&mut sim, &format!("/channels/{ROOM_PATH}/presence"));
    assert_eq!(response.status, 200);
    let members = body(&response);
    assert_eq!(members.as_array().unwrap().len(), 5);
    assert!(members.as_array().unwrap().iter().all(|m| m["action"] == 1));
    assert_eq!(members[2]["data"], "u2");

    let response = get(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence?clientId=user-3"),
    );
    let members = body(&response);
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["clientId"], "user-3");
    // An empty filter (what `ably` sends for `null` or `''`) is no filter, as in a realtime get().
    let response = get(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence?clientId=&connectionId="),
    );
    assert_eq!(body(&response).as_array().unwrap().len(), 5);

    let mut url = format!("/channels/{ROOM_PATH}/presence?limit=2");
    let mut seen = Vec::new();
    for _ in 0..10 {
        let response = get(&mut sim, &url);
        seen.extend(
            body(&response)
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["clientId"].clone()),
        );
        match next_link(&response) {
            Some(next) => url = format!("/channels/{ROOM_PATH}/{next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn a_page_of_members_holds_its_place_while_members_come_and_go() {
    let mut sim = Sim::new(HubConfig::default());
    let (server, _) = sim.join("key=app.any:thing", ROOM);
    let clients: Vec<_> = ["m1", "m2", "m3", "m4", "m5", "m6"]
        .iter()
        .map(|c| json!({"action": 2, "clientId": c}))
        .collect();
    sim.presence(server, ROOM, 0, json!(clients));
    let page = |sim: &mut Sim, url: &str| {
        let response = get(sim, url);
        let ids: Vec<String> = body(&response)
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["clientId"].as_str().unwrap().to_owned())
            .collect();
        (ids, next_link(&response))
    };
    let (first, next) = page(&mut sim, &format!("/channels/{ROOM_PATH}/presence?limit=2"));
    assert_eq!(first, ["m1", "m2"]);
    // One enters before the page's end: the next page is the rest, with nobody twice.
    sim.presence(server, ROOM, 1, json!([{"action": 2, "clientId": "a0"}]));
    let (second, next) = page(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/{}", next.unwrap()),
    );
    assert_eq!(second, ["m3", "m4"]);
    // One of a page read leaves: nobody is missed.
    sim.presence(server, ROOM, 2, json!([{"action": 3, "clientId": "m3"}]));
    let (third, next) = page(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/{}", next.unwrap()),
    );
    assert_eq!(third, ["m5", "m6"]);
    assert!(next.is_none());
}

#[test]
fn history_pages_backwards_by_default_and_forwards_on_request() {
    let mut sim = populated();
    let response = get(&mut sim, &format!("/channels/{ROOM_PATH}/presence/history"));
    let events = body(&response);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 10);
    assert_eq!(events[0]["action"], 4, "newest first");
    assert_eq!(events[0]["data"], "u4");
    assert_eq!(events[9]["action"], 2);
    assert_eq!(events[9]["data"], "d0");
    assert!(next_link(&response).is_none());

    // Pages of three, following the links as ably-js does: only the link's own parameters.
    let (data, pages) = pages_of_history(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence/history?limit=3&direction=forwards"),
    );
    assert_eq!(pages, 4);
    assert_eq!(
        data,
        ["d0", "u0", "d1", "u1", "d2", "u2", "d3", "u3", "d4", "u4"]
    );
}

#[test]
fn history_honours_start_and_end_and_expires() {
    let mut sim = populated();
    let first = common::T0 as i64;
    let response = get(
        &mut sim,
        &format!(
            "/channels/{ROOM_PATH}/presence/history?start={}&end={}",
            first + 20,
            first + 40
        ),
    );
    let data: Vec<_> = body(&response)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(
        data,
        vec![json!("d2"), json!("u1"), json!("d1")],
        "inclusive bounds"
    );
    sim.advance(120_001);
    let response = get(&mut sim, &format!("/channels/{ROOM_PATH}/presence/history"));
    assert_eq!(body(&response), json!([]), "kept 120 s by default");
}

#[test]
fn history_until_attach_ends_at_the_attach_and_pages_so() {
    let mut sim = populated();
    let (_, serial) = sim.attach_with("clientId=watcher", ROOM, 0);
    // Two events after the attach: the watcher hears them live, so history leaves them out.
    let (late, _) = sim.join("clientId=late", ROOM);
    sim.presence(late, ROOM, 0, json!([{"action": 2, "data": "after"}]));
    sim.presence(late, ROOM, 1, json!([{"action": 4, "data": "after"}]));
    assert_eq!(
        body(&get(
            &mut sim,
            &format!("/channels/{ROOM_PATH}/presence/history")
        ))
        .as_array()
        .unwrap()
        .len(),
        12
    );

    let (data, _) = pages_of_history(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence/history?limit=3&from_serial={serial}"),
    );
    assert_eq!(
        data,
        ["u4", "d4", "u3", "d3", "u2", "d2", "u1", "d1", "u0", "d0"],
        "the links keep the attach point"
    );

    // A serial this hub did not write (another hub's, or made up) is refused, not ignored.
    for bad in ["elsewhere:3", "3", "rollcall:x"] {
        let response = get(
            &mut sim,
            &format!("/channels/{ROOM_PATH}/presence/history?from_serial={bad}"),
        );
        assert_eq!(response.status, 400, "{bad}");
        assert_eq!(header(&response, "x-ably-errorcode"), Some("40000"));
    }
}

#[test]
fn history_until_an_attach_to_a_channel_since_forgotten_holds_nothing_of_the_new_one() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "a"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    sim.send(alice, json!({"action": 7}));
    // Attached to enter, not to listen: the channel is forgotten once its history expires.
    let (_, serial) = sim.attach_with("clientId=agent", ROOM, rollcall::protocol::flags::PRESENCE);
    sim.advance(400_000);
    // The channel is made again, and has events, all after the agent attached.
    let (late, _) = sim.join("clientId=late", ROOM);
    for n in 0..3 {
        sim.presence(
            late,
            ROOM,
            n,
            json!([{"action": 4, "data": format!("v{n}")}]),
        );
    }
    let response = get(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence/history?from_serial={serial}"),
    );
    assert_eq!(
        body(&response),
        json!([]),
        "none of them came before its attach"
    );
}

#[test]
fn links_carry_the_parameters_the_hub_does_not_read() {
    let mut sim = populated();
    let url = format!("/channels/{ROOM_PATH}/presence/history?limit=1&shard=room-7&envelope=json");
    let response = get(&mut sim, &url);
    let links = body(&response)["headers"]["link"]
        .as_str()
        .unwrap()
        .to_owned();
    for rel in ["first", "current", "next"] {
        let link = links
            .split(", ")
            .find(|l| l.ends_with(&format!("rel=\"{rel}\"")))
            .unwrap_or_else(|| panic!("no {rel} link in {links}"));
        assert!(link.contains("shard=room-7"), "{link}");
        assert!(!link.contains("envelope"), "{link}");
    }
}

#[test]
fn the_envelope_carries_status_links_and_body() {
    let mut sim = populated();
    let response = get(
        &mut sim,
        &format!("/channels/{ROOM_PATH}/presence/history?limit=2&envelope=json"),
    );
    assert_eq!(response.status, 200);
    let wrapped = body(&response);
    assert_eq!(wrapped["statusCode"], 200);
    assert!(wrapped["headers"]["link"]
        .as_str()
        .unwrap()
        .contains("rel=\"next\""));
    assert_eq!(wrapped["response"].as_array().unwrap().len(), 2);
}

#[test]
fn cors_preflight_and_headers() {
    let mut sim = Sim::new(HubConfig::default());
    let request = RestRequest {
        method: "OPTIONS",
        url: "/channels/x/presence",
        authorization: None,
        accept: None,
        origin: None,
        body: &[],
    };
    let response = sim.hub.handle_rest(sim.now, &request).unwrap();
    assert_eq!(response.status, 204);
    assert!(header(&response, "access-control-allow-headers")
        .unwrap()
        .contains("x-ably-clientid"));
    let response = get(&mut sim, "/channels/x/presence");
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&response, "vary"),
        Some("Origin"),
        "an answer that depends on it"
    );
    assert!(header(&response, "access-control-expose-headers")
        .unwrap()
        .contains("link"));
    // From a page on another origin, as Ably's client asks (credentialed: it sends its
    // Authorization so): a browser reads the answer only if it names the origin and allows
    // credentials, on the preflight and on the read.
    for method in ["OPTIONS", "GET"] {
        let request = RestRequest {
            method,
            url: "/channels/x/presence",
            authorization: None,
            accept: None,
            origin: Some("https://app.example"),
            body: &[],
        };
        let response = sim.hub.handle_rest(sim.now, &request).unwrap();
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://app.example"),
            "{method}"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(header(&response, "vary"), Some("Origin"));
    }
}

#[test]
fn links_write_a_space_as_percent_20_which_decode_uri_component_reads() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=Jane%20Doe", "x");
    sim.presence(alice, "x", 0, json!([{"action": 2}]));
    let (bob, _) = sim.join("clientId=Jane%20Eyre", "x");
    sim.presence(bob, "x", 0, json!([{"action": 2}]));
    let response = get(
        &mut sim,
        "/channels/x/presence?limit=1&clientId=Jane%20Doe%2B",
    );
    let link = header(&response, "link").unwrap();
    assert!(!link.contains('+'), "{link}");
    assert!(link.contains("clientId=Jane%20Doe%2B"), "{link}");
    let response = get(&mut sim, "/channels/x/presence?limit=1");
    let link = header(&response, "link").unwrap().to_owned();
    assert!(link.contains("%3AJane%20Doe"), "{link}");
    // The next page, as Ably's client asks for it: the link's query read with
    // decodeURIComponent and written again with encodeURIComponent, which makes a `+` %2B.
    let next = link
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.split_once("?"))
        .map(|(_, rest)| rest.split_once('>').unwrap().0.replace('+', "%2B"))
        .unwrap();
    let page = get(&mut sim, &format!("/channels/x/presence?{next}"));
    let ids: Vec<String> = body(&page)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["Jane Eyre"]);
}

#[test]
fn unknown_paths_are_the_hosts_and_bad_ones_are_errors() {
    let mut sim = Sim::new(HubConfig::default());
    let request = RestRequest {
        method: "GET",
        url: "/index.html",
        authorization: None,
        accept: None,
        origin: None,
        body: &[],
    };
    assert!(sim.hub.handle_rest(sim.now, &request).is_none());
    let response = get(&mut sim, "/channels/x/members");
    assert_eq!(response.status, 404);
    assert_eq!(body(&response)["error"]["code"], 40400);
    let response = get(&mut sim, "/channels/x/presence/history?direction=sideways");
    assert_eq!(response.status, 400);
    assert_eq!(header(&response, "x-ably-errorcode"), Some("40000"));
    // A cursor is the hub's own: one it did not write is refused, not read as something else.
    let response = get(&mut sim, "/channels/x/presence?cursor=18446744073709551615");
    assert_eq!(response.status, 400);
    assert_eq!(header(&response, "x-ably-errorcode"), Some("40000"));
    let response = get(&mut sim, "/channels/x/presence/history?cursor=abc");
    assert_eq!(response.status, 400);
    let response = get(&mut sim, "/channels/x/presence?cursor=c1:nobody");
    assert_eq!(
        response.status, 200,
        "after a member who has gone: the rest"
    );
    let request = RestRequest {
        method: "POST",
        url: "/channels/x/presence",
        authorization: None,
        accept: None,
        origin: None,
        body: &[],
    };
    assert_eq!(sim.hub.handle_rest(sim.now, &request).unwrap().status, 405);
}

#[test]
fn with_keys_the_reads_need_basic_auth() {
    let config = HubConfig {
        keys: ApiKey::parse_list("app.k:secret").unwrap(),
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let url = "/channels/x/presence/history";
    assert_eq!(get(&mut sim, url).status, 401);
    let wrong = format!("Basic {}", b64("app.k:nope"));
    assert_eq!(get_with(&mut sim, url, Some(&wrong)).status, 401);
    let right = format!("Basic {}", b64("app.k:secret"));
    assert_eq!(get_with(&mut sim, url, Some(&right)).status, 200);
    // The scheme's name in any case, and more than one space after it (RFC 9110), as curl
    // scripts and proxies may write it.
    let written_otherwise = format!("basic   {} ", b64("app.k:secret"));
    assert_eq!(
        get_with(&mut sim, url, Some(&written_otherwise)).status,
        200
    );
    let unknown = format!("Basically {}", b64("app.k:secret"));
    assert_eq!(get_with(&mut sim, url, Some(&unknown)).status, 401);
    assert_eq!(
        get(&mut sim, "/time").status,
        200,
        "time needs no credentials"
    );
}

/// A hub with two keys: `app.all` may do anything; `app.watcher` may read the members of
/// `room:*` and the history of `room:open`, and nothing else.
fn capable() -> Sim {
    let watcher = ApiKey {
        capability: Capability::parse(&json!({"room:*": ["subscribe"], "room:open": ["history"]}))
            .unwrap(),
        ..ApiKey::parse("app.watcher:0ther").unwrap()
    };
    let config = HubConfig {
        keys: vec![ApiKey::parse("app.all:s3cret").unwrap(), watcher],
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    for channel in ["room:open", "room:shut", "secret"] {
        let (peer, _) = sim.join("key=app.all:s3cret&clientId=alice", channel);
        sim.presence(peer, channel, 0, json!([{"action": 2, "data": "private"}]));
    }
    sim
}

/// Status and error code of a read.
fn outcome(sim: &mut Sim, url: &str, authorization: &str) -> (u16, Option<u64>) {
    let response = get_with(sim, url, Some(authorization));
    let code = (response.status != 200)
        .then(|| body(&response)["error"]["code"].as_u64())
        .flatten()
        .or_else(|| header(&response, "x-ably-errorcode").and_then(|c| c.parse().ok()));
    (response.status, code)
}

#[test]
fn batch_presence_lists_each_channels_members_or_why_not() {
    let mut sim = capable();
    let watcher = format!("Basic {}", b64("app.watcher:0ther"));
    let response = get_with(
        &mut sim,
        "/presence?channels=room:open,secret,room:empty",
        Some(&watcher),
    );
    assert_eq!(response.status, 200);
    let batch = body(&response);
    assert_eq!(
        (&batch["successCount"], &batch["failureCount"]),
        (&json!(2), &json!(1))
    );
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results[0]["channel"], "room:open");
    assert_eq!(results[0]["presence"][0]["clientId"], "alice");
    assert_eq!(results[0]["presence"][0]["data"], "private");
    assert_eq!(results[1]["channel"], "secret");
    assert_eq!(results[1]["error"]["code"], 40160);
    assert!(results[1].get("presence").is_none());
    assert_eq!(results[2], json!({"channel": "room:empty", "presence": []}));
    // A channel named twice is answered once.
    let twice = body(&get_with(
        &mut sim,
        "/presence?channels=room:open&channels=room:open,room:open",
        Some(&watcher),
    ));
    assert_eq!(twice["results"].as_array().unwrap().len(), 1);
    // No channels named, too many, or no credentials: refused whole.
    assert_eq!(outcome(&mut sim, "/presence", &watcher), (400, Some(40000)));
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let url = format!("/presence?channels={}", many.join(","));
    assert_eq!(outcome(&mut sim, &url, &watcher), (400, Some(40000)));
    assert_eq!(get(&mut sim, "/presence?channels=room:open").status, 401);
    // Ably's other resources are not the hub's: said as Ably says it.
    assert_eq!(outcome(&mut sim, "/stats", &watcher), (404, Some(40400)));
}

#[test]
fn batch_presence_answers_within_a_budget_and_says_which_channels_did_not_fit() {
    // 60 members of 60 KB on each of two channels: the first fits in the read's 4 MiB, the
    // second does not, and is to be read on its own.
    let mut sim = Sim::new(HubConfig::default());
    let big = "x".repeat(60_000);
    for channel in ["one", "two"] {
        for n in 0..60 {
            let (peer, _) = sim.join(&format!("clientId=u{n}"), channel);
            sim.presence(peer, channel, 0, json!([{"action": 2, "data": big}]));
        }
    }
    let batch = body(&get(&mut sim, "/presence?channels=one,two"));
    assert_eq!(
        (&batch["successCount"], &batch["failureCount"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        batch["results"][0]["presence"].as_array().unwrap().len(),
        60
    );
    assert_eq!(batch["results"][1]["error"]["code"], 40009);
    // On its own, page by page (a page holds 1 MiB).
    let page = body(&get(&mut sim, "/channels/two/presence?limit=1000"));
    let first = page.as_array().map_or(0, Vec::len);
    assert!(first > 0 && first < 60, "{first}");
}

#[test]
fn reads_need_the_capability_for_the_channel() {
    let mut sim = capable();
    let watcher = format!("Basic {}", b64("app.watcher:0ther"));
    let all = format!("Basic {}", b64("app.all:s3cret"));
    for (url, expected) in [
        ("/channels/room:open/presence", (200, None)),
        ("/channels/room:shut/presence", (200, None)),
        ("/channels/secret/presence", (401, Some(40160))),
        ("/channels/room:open/presence/history", (200, None)),
        ("/channels/room:shut/presence/history", (401, Some(40160))),
        ("/channels/secret/presence/history", (401, Some(40160))),
    ] {
        assert_eq!(outcome(&mut sim, url, &watcher), expected, "{url}");
        assert_eq!(outcome(&mut sim, url, &all), (200, None), "{url}");
    }
    let refused = get_with(
        &mut sim,
        "/channels/secret/presence/history",
        Some(&watcher),
    );
    assert!(!String::from_utf8_lossy(&refused.body).contains("private"));
    // A refusal naming a channel with a line break and non-ASCII in it: a header a host can
    // send, and the name intact in the body.
    let odd = get_with(
        &mut sim,
        "/channels/a%0D%0Ab%C3%A9/presence",
        Some(&watcher),
    );
    assert_eq!(odd.status, 401);
    let message = header(&odd, "x-ably-errormessage").unwrap();
    assert!(
        message.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
        "{message:?}"
    );
    assert!(message.ends_with("channel a??b?"), "{message:?}");
    assert_eq!(
        body(&odd)["error"]["message"]
            .as_str()
            .unwrap()
            .chars()
            .last(),
        Some('é')
    );
}

#[test]
fn reads_take_tokens_as_the_ably_client_sends_them_and_as_they_are() {
    let mut sim = capable();
    let exp = sim.now / 1000 + 3600;
    let narrow = common::jwt(
        "app.all",
        "s3cret",
        &json!({"exp": exp, "x-ably-capability": r#"{"room:*":["subscribe","history"]}"#}),
    );
    let url = "/channels/room:shut/presence/history";
    for authorization in [
        format!("Bearer {}", b64(&narrow)),
        format!("Bearer {narrow}"),
    ] {
        assert_eq!(outcome(&mut sim, url, &authorization), (200, None));
        assert_eq!(
            outcome(&mut sim, "/channels/secret/presence", &authorization),
            (401, Some(40160))
        );
    }
    // A token signed by the watcher key gets no more than the key, whatever it asks for.
    let greedy = common::jwt(
        "app.watcher",
        "0ther",
        &json!({"exp": exp, "x-ably-capability": {"*": ["*"]}}),
    );
    let bearer = format!("Bearer {}", b64(&greedy));
    assert_eq!(outcome(&mut sim, url, &bearer), (401, Some(40160)));
    assert_eq!(
        outcome(&mut sim, "/channels/room:shut/presence", &bearer),
        (200, None)
    );
    // Expired, forged, or some other scheme.
    let expired = common::jwt("app.all", "s3cret", &json!({"exp": sim.now / 1000 - 1}));
    assert_eq!(
        outcome(&mut sim, url, &format!("Bearer {}", b64(&expired))),
        (401, Some(40142))
    );
    let forged = common::jwt("app.all", "guess", &json!({"exp": exp}));
    assert_eq!(
        outcome(&mut sim, url, &format!("Bearer {forged}")),
        (401, Some(40144))
    );
    assert_eq!(outcome(&mut sim, url, "Digest x"), (401, Some(40101)));
}

#[test]
fn in_development_mode_a_token_still_limits_the_reads() {
    let mut sim = Sim::new(HubConfig::default());
    let exp = sim.now / 1000 + 3600;
    let narrow = common::jwt(
        "any",
        "thing",
        &json!({"exp": exp, "x-ably-capability": {"room:*": ["subscribe"]}}),
    );
    let bearer = format!("Bearer {}", b64(&narrow));
    assert_eq!(
        outcome(&mut sim, "/channels/room:1/presence", &bearer),
        (200, None)
    );
    assert_eq!(
        outcome(&mut sim, "/channels/room:1/presence/history", &bearer),
        (401, Some(40160))
    );
    assert_eq!(
        get(&mut sim, "/channels/room:1/presence/history").status,
        200
    );
}

fn b64(text: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn msgpack_bodies_when_the_client_accepts_them() {
    let mut sim = populated();
    let url = format!("/channels/{ROOM_PATH}/presence/history?limit=3");
    let request = RestRequest {
        method: "GET",
        url: &url,
        authorization: None,
        accept: Some("application/x-msgpack"),
        origin: None,
        body: &[],
    };
    let response = sim.hub.handle_rest(sim.now, &request).unwrap();
    assert_eq!(
        header(&response, "content-type"),
        Some("application/x-msgpack")
    );
    let events: Vec<rollcall::protocol::PresenceMessage> =
        rmp_serde::from_slice(&response.body).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(common::data(&events[0]).as_deref(), Some("u4"));
    let url = format!("/channels/{ROOM_PATH}/presence?envelope=msgpack");
    let request = RestRequest {
        method: "GET",
        url: &url,
        authorization: None,
        accept: None,
        origin: None,
        body: &[],
    };
    let response = sim.hub.handle_rest(sim.now, &request).unwrap();
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "statusCode")]
        status_code: u16,
        response: Vec<rollcall::protocol::PresenceMessage>,
    }
    let envelope: Envelope = rmp_serde::from_slice(&response.body).unwrap();
    assert_eq!((envelope.status_code, envelope.response.len()), (200, 5));
}

/// A hub whose history may hold `budget` bytes, where one connection has sent `item` ten
/// times on each of 20 channels (`{prefix}0`…), a second apart: every one acknowledged.
fn spread_over_channels(budget: u64, prefix: &str, item: &Value) -> Sim {
    let mut sim = Sim::new(HubConfig {
        max_history_bytes: budget,
        ..HubConfig::default()
    });
    let (peer, _) = sim.connect("clientId=spam");
    let mut serial = 0;
    for c in 0..20 {
        let channel = format!("{prefix}{c}");
        sim.send(peer, json!({"action": 10, "channel": channel}));
        for _ in 0..10 {
            let replies = sim.presence(peer, &channel, serial, json!([item]));
            assert_eq!(
                replies.last().unwrap().action,
                rollcall::protocol::Action::Ack
            );
            serial += 1;
        }
        sim.advance(1000);
    }
    sim
}

#[test]
fn history_across_channels_is_held_to_the_hub_wide_budget() {
    let budget = 64 * 1024;
    let mut sim = spread_over_channels(
        budget,
        "spam",
        &json!({"action": 4, "data": "x".repeat(1000)}),
    );
    let held = sim.hub.stats().history_bytes;
    assert!(held <= budget, "{held} bytes of history, over {budget}");
    assert!(
        held > budget / 2,
        "{held} bytes: the budget is used, not emptied"
    );
    let count = |sim: &mut Sim, channel: &str| {
        let url = format!("/channels/{channel}/presence/history?limit=1000");
        body(&get(sim, &url)).as_array().unwrap().len()
    };
    // The oldest events went first, wherever they were.
    assert_eq!(count(&mut sim, "spam0"), 0);
    assert_eq!(count(&mut sim, "spam19"), 10);
    // Presence itself is untouched.
    for c in 0..20 {
        assert_eq!(sim.members(&format!("spam{c}")).len(), 1);
    }
    // Once the history has expired (and a sweep has seen it), nothing is left counted.
    sim.advance(2 * HubConfig::default().history_ttl + 2_000);
    assert_eq!(sim.hub.stats().history_bytes, 0);
}

#[test]
fn the_encoding_of_an_event_counts_toward_the_history_budget() {
    // An `encoding` is stored as given: uncounted, the longest taken (256 bytes) on every
    // event would hold the history far over its budget.
    let budget = 16 * 1024;
    let encoding = "x".repeat(256);
    let mut sim = spread_over_channels(
        budget,
        "enc",
        &json!({"action": 4, "data": "d", "encoding": encoding}),
    );
    let kept: usize = (0..20)
        .map(|c| {
            let url = format!("/channels/enc{c}/presence/history?limit=1000");
            body(&get(&mut sim, &url)).as_array().unwrap().len()
        })
        .sum();
    // Each event holds its encoding and at least 100 bytes of ids besides.
    assert!(
        kept * (encoding.len() + 100) <= budget as usize,
        "{kept} events of {} bytes of encoding kept, over {budget}",
        encoding.len()
    );
    assert!(kept > 0);
}

#[test]
fn a_page_of_large_items_ends_early_and_its_link_leads_to_the_rest() {
    // A thousand items of 60 KB would be a body of 60 MB: a page stops at about 1 MiB.
    let mut sim = Sim::new(HubConfig::default());
    let data = "x".repeat(60_000);
    for n in 0..40 {
        let (peer, _) = sim.join(&format!("clientId=m{n:02}"), "big");
        sim.presence(peer, "big", 0, json!([{"action": 2, "data": data}]));
    }
    for resource in ["presence", "presence/history"] {
        let mut url = format!("/channels/big/{resource}?limit=1000");
        // The link is relative to the resource's last segment.
        let base = resource.strip_suffix("history").unwrap_or_default();
        let (mut seen, mut pages) = (Vec::new(), 0);
        loop {
            let response = get(&mut sim, &url);
            assert!(
                response.body.len() < 1_200_000,
                "{} bytes",
                response.body.len()
            );
            let items = body(&response);
            let items = items.as_array().unwrap();
            assert!(!items.is_empty());
            seen.extend(
                items
                    .iter()
                    .map(|i| i["clientId"].as_str().unwrap().to_owned()),
            );
            pages += 1;
            match next_link(&response) {
                Some(next) => url = format!("/channels/big/{base}{next}"),
                None => break,
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 40, "{resource}: every item once");
        assert!(pages >= 3, "{resource}: {pages} pages");
    }
}

#[test]
fn a_channel_is_not_forgotten_while_its_numbers_are_ahead_of_the_clock() {
    // Events past a thousand a millisecond: made again at once, the channel would number its
    // events below those a client attached without hearing them (the agent) was told of.
    let mut sim = Sim::new(HubConfig {
        history_limit: 0,
        max_inbound_rate: 100_000,
        ..HubConfig::default()
    });
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let (agent, _) = sim.attach_with("clientId=agent", ROOM, rollcall::protocol::flags::PRESENCE);
    for n in 0..1_001 {
        sim.send_in_one_turn(
            alice,
            [json!({"action": 14, "channel": ROOM, "msgSerial": n, "presence": [{"action": 4, "data": format!("{n}")}]})],
        );
    }
    sim.presence(alice, ROOM, 1_001, json!([{"action": 3}]));
    sim.send(alice, json!({"action": 12, "channel": ROOM}));
    assert_eq!(sim.hub.stats().channels, 1, "held: its numbers are ahead");
    // Its numbers go on (the hub's invariants check the agent's against them).
    let (again, _) = sim.join("clientId=again", ROOM);
    sim.presence(again, ROOM, 0, json!([{"action": 2}]));
    let replies = sim.presence(agent, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(
        replies.last().map(|m| m.action),
        Some(rollcall::protocol::Action::Ack)
    );
}

#[test]
fn the_sweep_does_not_forget_a_channel_whose_numbers_are_ahead_of_the_clock_either() {
    let mut sim = Sim::new(HubConfig {
        history_limit: 0,
        history_ttl: 1_000,
        max_inbound_rate: 100_000,
        ..HubConfig::default()
    });
    // The sweep is armed for a second from now; a millisecond before it, a burst.
    let (_watcher, _) = sim.join("clientId=w", "other");
    sim.advance(999);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let (_agent, _) = sim.attach_with("clientId=agent", ROOM, rollcall::protocol::flags::PRESENCE);
    for n in 0..1_001 {
        sim.send_in_one_turn(
            alice,
            [json!({"action": 14, "channel": ROOM, "msgSerial": n, "presence": [{"action": 4}]})],
        );
    }
    sim.presence(alice, ROOM, 1_001, json!([{"action": 3}]));
    sim.send(alice, json!({"action": 12, "channel": ROOM}));
    sim.advance(1);
    assert_eq!(sim.hub.stats().channels, 2, "held by the sweep too");
}

#[test]
fn what_a_reader_is_sent_is_held_to_a_budget_of_its_own() {
    // A read of a few hundred bytes can cost megabytes to answer: each reader (here a key) may
    // be sent 64 MiB at once and 16 MiB a second, and others are served meanwhile.
    let config = HubConfig {
        keys: ApiKey::parse_list("app.reader:one,app.other:two").unwrap(),
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (writer, _) = sim.join("key=app.reader:one", "big");
    // Nearly 1 MiB of members, one to a message.
    for serial in 0..16 {
        let member =
            json!([{"action": 2, "clientId": format!("u{serial}"), "data": "x".repeat(60_000)}]);
        let entered = sim.presence(writer, "big", serial, member);
        let acked = entered
            .iter()
            .any(|m| m.action == rollcall::protocol::Action::Ack);
        assert!(acked, "{entered:?}");
    }
    let reader = format!("Basic {}", b64("app.reader:one"));
    let other = format!("Basic {}", b64("app.other:two"));
    let url = "/channels/big/presence";
    let mut answered = 0usize;
    let refused = loop {
        let response = get_with(&mut sim, url, Some(&reader));
        if response.status != 200 {
            break response;
        }
        answered += response.body.len();
        assert!(answered < 128 << 20, "never refused");
    };
    assert_eq!(refused.status, 429);
    assert_eq!(body(&refused)["error"]["code"], 42910);
    assert!(
        (64 << 20..72 << 20).contains(&answered),
        "{answered} bytes before the refusal"
    );
    // Another reader is served; this one again once its budget has filled.
    assert_eq!(get_with(&mut sim, url, Some(&other)).status, 200);
    sim.advance(1_000);
    assert_eq!(get_with(&mut sim, url, Some(&reader)).status, 200);
    // The hub's time is everyone's, and costs nothing.
    assert_eq!(get(&mut sim, "/time").status, 200);
}
