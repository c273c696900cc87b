"""The source families of data/CODEBOOK.md section 7.2, as a table the grade test applies.

Each name in a row's `source` column maps to (independence family, the party whose official
record it is or None, kind): kind 'official' (a party's own record), 'news' (counts as one
family), 'agg' (aggregator or encyclopedia: never counts towards independence). A name not in
the table is its own news family, as the codebook says of every other organisation.
"""

F = {}


def add(fam, party, *names, kind="news"):
    for n in names:
        F[n] = (fam, party, kind)


# Turkish state
add(
    "TR-state",
    "turkey",
    "Turkish Ministry of Foreign Affairs",
    "Turkish MFA",
    "Turkish Ministry of Foreign Affairs (QA-34)",
    "Turkish Presidency",
    "Turkish Directorate of Communications",
    "Turkish Ministry of National Defence",
    "Grand National Assembly of Turkey",
    "Official Gazette of Turkey",
    "Turkish Ministry of Foreign Affairs press release No. 33",
    "Turkish Presidency Communications Directorate",
    "Turkish General Staff",
    kind="official",
)
add("TR-state", None, "Anadolu Agency", "TRT", "TRT World")
add("Turkuvaz", None, "Daily Sabah", "Sabah")
add("Demiroren", None, "Hurriyet Daily News", "DHA", "Hurriyet Daily News (Turkish MFA statement)")
# Russian state
add(
    "RU-state",
    "russia",
    "Kremlin.ru",
    "Kremlin (Peskov)",
    "Russian Ministry of Defence",
    "Russian Ministry of Foreign Affairs",
    "Russian Ministry of Defence briefing",
    kind="official",
)
add(
    "RU-state",
    None,
    "TASS",
    "RIA Novosti",
    "RIA Novosti Crimea",
    "Sputnik",
    "Sputnik/RIA Novosti",
    "Rossiyskaya Gazeta",
    "Akkuyu Nuclear (via WNISR)",
    "Rosatom",
    "Rostec",
    "Gazprom",
)
# US government
add(
    "US-gov",
    "united_states",
    "The White House",
    "The White House (Truth Social)",
    "US Department of State",
    "US Department of Defense",
    "US Department of the Treasury",
    "US Department of Justice",
    "US Attorney's Office SDNY",
    "US Embassy Ankara",
    "US Congress",
    "US House of Representatives",
    "US Senate",
    "US Defense Security Cooperation Agency",
    "Office of the US Trade Representative",
    kind="official",
)
add(
    "EU",
    "eu",
    "Council of the EU",
    "European Council",
    "European Commission",
    "EU High Representative",
    "EEAS",
    "European Parliament",
    "European Council conclusions",
    "European Council press release",
    kind="official",
)
add("NATO", "nato", "NATO", "KFOR", "NATO press release", kind="official")
add(
    "UA-state",
    "ukraine",
    "Ministry of Foreign Affairs of Ukraine",
    "Office of the President of Ukraine",
    "Embassy of Ukraine in Turkey",
    "Ministry of Defence of Ukraine",
    "Ukrainian Navy",
    kind="official",
)
add("UA-state", None, "Ukrinform")
add(
    "GE-state",
    "georgia",
    "Ministry of Foreign Affairs of Georgia",
    "Office of the Prime Minister of Georgia",
    kind="official",
)
add(
    "AZ-state",
    "azerbaijan",
    "President.az",
    "Azerbaijan Ministry of Defence",
    "Ministry of Foreign Affairs of Azerbaijan",
    kind="official",
)
add("AZ-state", None, "AZERTAC")
add("FR-state", "france", "French Ministry of the Armed Forces", kind="official")
add("IR-state", None, "IRNA", "Mehr")
add("CN-state", None, "Xinhua")
add("Interfax", None, "Interfax", "Interfax (via UAWire)")
add("QHA", None, "QHA", "QHA Crimean News Agency")
add("AFP", None, "AFP", "AFP (both citing A Haber)")
# aggregators, never an independent family (codebook 7.2)
add("agg", None, "News-Pravda (aggregator)", "MyDnepr", "My.ua", "Sawjo", kind="agg")
# single pages relaying another organisation: one family
add("Duvar", None, "Duvar English", "Duvar English (citing Reuters and US Department of Commerce)")
add("Turkish Minute", None, "Turkish Minute (citing US Department of State)")
add("BGNES", None, "BGNES (citing Anadolu Agency)")
add("Interfax-Ukraine", None, "Interfax-Ukraine", "Turkish Ministry of Foreign Affairs (via Interfax-Ukraine)")
add("ILKHA", None, "Turkish Ministry of Foreign Affairs (via ILKHA)")


def lookup(name):
    if name in F:
        return F[name]
    if name.lower().startswith("wikipedia"):
        return ("agg", None, "agg")
    return (name, None, "news")  # every other organisation is its own family
