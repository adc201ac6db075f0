//! People's agents that look like crawlers, device types from the model and the
//! screen, and marketing names, through the public [`Enricher`] a user calls.
//! The agents are the classes seen taken for bots on an outside corpus: apps' own
//! agents, browsers whose names hold a crawler's word, devices whose model names
//! hold one; one named case each.

use beacon_core::{Hit, Site, ValidationContext};
use beacon_enrich::{flat_json, BotDetector, Enricher};
use chrono::{TimeZone, Utc};
use serde_json::Value;

fn flat(e: &Enricher, ua: &str, screen: Option<(u32, u32)>) -> Value {
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let mut hit = serde_json::json!({"site": "example.com", "type": "pageview",
        "url": "https://example.com/", "timestamp": "2026-03-01T11:00:00Z", "user_agent": ua});
    if let Some((w, h)) = screen {
        hit["screen"] = serde_json::json!([w, h]);
    }
    let valid = Hit::from_json(hit.to_string().as_bytes())
        .expect("hit")
        .validate(&ValidationContext::import(now), None)
        .expect("valid");
    flat_json(&e.enrich_hit(valid, &Site::new("example.com")))
}

/// (agent, device type, brand, model, model code)
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const PEOPLE: [Case; 28] = [
    // Messaging apps' own agents (WhatsApp's link-preview fetcher, "WhatsApp/2.19.92 i", stays a bot).
    ("WhatsApp/2.17.395 Android/6.0 Device/samsung-SM-J700F", "mobile", Some("Samsung"), Some("Galaxy J7"), Some("SM-J700F")),
    ("WhatsApp/2.20.110 iOS/13.5.1 Device/Apple-iPhone_11", "mobile", Some("Apple"), Some("iPhone 11"), None),
    // Google's apps.
    ("com.google.android.apps.searchlite/152.0.0.10.arm64 (Linux; U; Android 11; en_US; SM-A022F; Build/RP1A.200720.012; Cronet/92.0.4515.131)", "mobile", Some("Samsung"), Some("Galaxy A02"), Some("SM-A022F")),
    ("com.google.android.googlequicksearchbox/13.41.11.26.arm64 (Linux; U; Android 12; en_US; Pixel 6; Build/SQ1D.220205.004; Cronet/107.0.5304.54)", "mobile", Some("Google"), Some("Pixel 6"), Some("Pixel 6")),
    ("com.google.ios.youtube/17.33.2 (iPhone14,5; U; CPU iOS 15_6 like Mac OS X; en_US)", "mobile", Some("Apple"), Some("iPhone 13"), Some("iPhone14,5")),
    ("com.google.GoogleMobile/230.0 iPhone/16.1 hw/iPhone14_2", "mobile", Some("Apple"), Some("iPhone 13 Pro"), Some("iPhone14,2")),
    // Facebook's strings, alone and in a web view.
    ("[FBAN/FB4A;FBAV/247.0.0.42.123;FBBV/181434785;FBDM/{density=3.0,width=1080,height=2220};FBLC/en_US;FBRV/0;FBCR/T-Mobile;FBMF/samsung;FBBD/samsung;FBPN/com.facebook.katana;FBDV/SM-G960U;FBSV/10;FBOP/1;FBCA/arm64-v8a:;]", "mobile", Some("Samsung"), Some("Galaxy S9"), Some("SM-G960U")),
    ("[FBAN/FBIOS;FBDV/iPhone12,1;FBMD/iPhone;FBSN/iOS;FBSV/14.2;FBSS/2;FBID/phone;FBLC/en_US;FBOP/5]", "mobile", Some("Apple"), Some("iPhone 11"), Some("iPhone12,1")),
    ("Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.105 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/393.0.0.35.106;]", "mobile", Some("Samsung"), Some("Galaxy S21 5G"), Some("SM-G991B")),
    // UC Browser's own form; bare hardware identifiers.
    ("dv(iPh13,4);pr(UCBrowser/13.4.0.1306);ov(15_4_1);ss(428x926);bt(UC);pm(1);bv(0);nm(0);im(0);nt(1);", "mobile", Some("Apple"), Some("iPhone 12 Pro Max"), Some("iPhone13,4")),
    ("iPhone14,2", "mobile", Some("Apple"), Some("iPhone 13 Pro"), Some("iPhone14,2")),
    ("iPad8,1", "tablet", Some("Apple"), Some("iPad Pro (11-inch)"), Some("iPad8,1")),
    ("iPhone13", "mobile", Some("Apple"), Some("iPhone"), None),
    // Browsers whose names hold a crawler's word.
    ("Mozilla/5.0 (Linux; Android 10; V2001A Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/68.0.3440.106 Mobile Safari/537.36 SogouMSE,SogouMobileBrowser/5.33.2", "mobile", Some("Vivo"), Some("V2001A"), Some("V2001A")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 SogouMobileBrowser/5.25.4", "mobile", Some("Apple"), Some("iPhone"), None),
    ("GoogleEarth/7.3.6.9345(Windows;Microsoft Windows (6.2.9200.0);en;kml:2.2;client:Pro;type:default)", "desktop", None, None, None),
    // Devices whose model names hold a crawler's word.
    ("Mozilla/5.0 (Linux; Android 8.1.0; XBot Junior Build/O11019) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0.3987.99 Mobile Safari/537.36", "mobile", Some("xTouch"), Some("XBot Junior"), Some("XBot Junior")),
    ("Mozilla/5.0 (Linux; Android 9; CUBOT_X19 Build/PPR1.180610.011) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.181 Mobile Safari/537.36", "mobile", Some("Cubot"), Some("CUBOT_X19"), Some("CUBOT_X19")),
    ("Mozilla/5.0 (Linux; Android 11;CUBOT KINGKONG 5 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0.4664.45 Mobile Safari/537.36", "mobile", Some("Cubot"), Some("KINGKONG 5 Pro"), Some("KINGKONG 5 Pro")),
    ("Mozilla/5.0 (Linux; Android 4.4.2; Discovery Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/30.0.0.0 Mobile Safari/537.36", "mobile", None, Some("Discovery"), Some("Discovery")),
    ("Mozilla/5.0 (Linux; Android 6.0; Radar 4G Build/MRA58K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/69.0.3497.100 Mobile Safari/537.36", "mobile", None, Some("Radar 4G"), Some("Radar 4G")),
    ("Mozilla/5.0 (Linux; Android 7.0; Forward Ruby Build/NRD90M) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0.3987.119 Mobile Safari/537.36", "mobile", None, None, None),
    // Dalvik, Android without "Mobile", TVs and consoles.
    ("Dalvik/2.1.0 (Linux; U; Android 9; SM-G960F Build/PPR1.180610.011)", "mobile", Some("Samsung"), Some("Galaxy S9"), Some("SM-G960F")),
    ("Mozilla/5.0 (Linux; Android 12; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36", "mobile", Some("Samsung"), Some("Galaxy S21 5G"), Some("SM-G991B")),
    ("Mozilla/5.0 (Linux; Android 10; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36", "tablet", Some("Samsung"), Some("Galaxy Tab A"), Some("SM-T510")),
    ("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.152 Mobile Safari/537.36", "tv", None, None, None),
    ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager", "tv", None, None, None),
    ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15", "console", None, None, None),
];

#[test]
fn app_agents_and_crawler_words_in_names_are_people() {
    let e = Enricher::new().expect("enricher");
    let mut wrong = Vec::new();
    for (ua, kind, brand, model, code) in PEOPLE {
        let f = flat(&e, ua, None);
        let s = |k: &str| f[k].as_str().map(str::to_owned);
        if f["is_bot"] != false || s("device_type").as_deref() != Some(kind) {
            wrong.push(format!(
                "{ua}: bot {} ({}), type {:?}",
                f["is_bot"],
                f["bot_reason"],
                s("device_type")
            ));
        }
        // The brand and the model where the case names them ("None" there means
        // only "not asserted" for the TV and console rows).
        if brand.is_some() || model.is_some() {
            let got = (s("device_brand"), s("device_model"), s("device_model_code"));
            let want = (
                brand.map(str::to_owned),
                model.map(str::to_owned),
                code.map(str::to_owned),
            );
            if got != want {
                wrong.push(format!("{ua}: {got:?}, want {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn link_preview_fetchers_and_named_crawlers_stay_bots() {
    let d = BotDetector::embedded().expect("lists");
    for ua in [
        "WhatsApp/2.19.92 i",
        "WhatsApp/2.12.449 A",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
        "Mozilla/5.0 (Linux; U; Android 4.0.2; en-us; Catchpoint) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ] {
        assert!(d.classify(Some(ua)).is_some(), "{ua}");
    }
    let e = Enricher::new().expect("enricher");
    let f = flat(&e, "WhatsApp/2.19.92 i", None);
    assert_eq!(
        (f["is_bot"].as_bool(), f["device_type"].as_str()),
        (Some(true), Some("bot"))
    );
}

#[test]
fn a_screen_decides_where_the_agent_does_not() {
    let e = Enricher::new().expect("enricher");
    let dalvik = "Dalvik/2.1.0 (Linux; U; Android 11; Lenovo TB-X606F Build/RP1A.200720.011)";
    let no_mobile = "Mozilla/5.0 (Linux; Android 11; XY-700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36";
    let app = "Dalvik/2.1.0 (Linux; U; Android 11; XY-700 Build/RP1A.200720.011)";
    let ty = |ua: &str, screen| {
        flat(&e, ua, screen)["device_type"]
            .as_str()
            .map(str::to_owned)
    };
    // The model says tablet: a tablet whatever the agent is.
    assert_eq!(ty(dalvik, None).as_deref(), Some("tablet"));
    // Unknown models: a browser without "Mobile" is on a tablet, an app on a phone,
    // unless the screen says otherwise (smallest side under 600 is a phone).
    assert_eq!(ty(no_mobile, None).as_deref(), Some("tablet"));
    assert_eq!(ty(no_mobile, Some((412, 915))).as_deref(), Some("mobile"));
    assert_eq!(ty(app, None).as_deref(), Some("mobile"));
    assert_eq!(ty(app, Some((800, 1280))).as_deref(), Some("tablet"));
    // A stated "Mobile" is not second-guessed by the screen.
    let phone = "Mozilla/5.0 (Linux; Android 11; XY-700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Mobile Safari/537.36";
    assert_eq!(ty(phone, Some((800, 1280))).as_deref(), Some("mobile"));
    // Windows' "Tablet PC" component is on desktops.
    let ie = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; WOW64; Trident/4.0; SLCC2; .NET CLR 2.0.50727; Tablet PC 2.0)";
    assert_eq!(ty(ie, None).as_deref(), Some("desktop"));
    // Feature phones: by their platform, or by a maker named with no desktop around it.
    let kaios = "Mozilla/5.0 (Mobile; Nokia_8110_4G; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5.1";
    assert_eq!(ty(kaios, None).as_deref(), Some("mobile"));
    assert_eq!(
        ty("ALCATEL-OT510A/382 ObigoInternetBrowser/Q05A", None).as_deref(),
        Some("mobile")
    );
    assert_eq!(
        ty("Mozilla/4.0 WebTV/2.6 (compatible; MSIE 4.0)", None).as_deref(),
        Some("tv")
    );
}
