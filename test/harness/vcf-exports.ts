/**
 * Multi-card .vcf text as Apple's and Google's contact exports write it (vCard 3.0 with their quirks), card by card:
 * the address-book integration test and bench/addressbook.ts import books built from these. `digits` pads the
 * phone numbers (the bench's 10,000-card book needs 5).
 */
/** An Apple Contacts export of card `i` (vCard 3.0, item groups with X-ABLabel, an omitted-year birthday). */
export const appleCard = (i: number, digits = 4): string =>
  [
    "BEGIN:VCARD",
    "VERSION:3.0",
    "PRODID:-//Apple Inc.//iPhone OS 17.4//EN",
    `N:Appleseed${i};Johnny;;;`,
    `FN:Johnny Appleseed ${i}`,
    "ORG:Apple Inc.;",
    `item1.EMAIL;type=INTERNET;type=pref:johnny${i}@example.com`,
    "item1.X-ABLabel:_$!<Other>!$_",
    `TEL;type=CELL;type=VOICE;type=pref:+1 555-${String(i).padStart(digits, "0")}`,
    `item2.TEL:+1 556-${String(i).padStart(digits, "0")}`,
    "item2.X-ABLabel:Holiday home",
    "BDAY;X-APPLE-OMIT-YEAR=1604:1604-03-15",
    "X-ABShowAs:PERSON",
    "END:VCARD",
    "",
  ].join("\r\n");

/** A Google Contacts export of card `i` (vCard 3.0, CATEGORIES, a URL photo, an X-ABLabel'd address). */
export const googleCard = (i: number, digits = 4): string =>
  [
    "BEGIN:VCARD",
    "VERSION:3.0",
    `FN:Grace Hopper ${i}`,
    `N:Hopper${i};Grace;;;`,
    `EMAIL;TYPE=INTERNET;TYPE=HOME:grace${i}@example.org`,
    `TEL;TYPE=CELL:+1 555 ${String(i).padStart(digits, "0")}`,
    "item1.ADR:;;1 Navy Way;Arlington;VA;22201;US",
    "item1.X-ABLabel:Office",
    "BDAY:--1209",
    "CATEGORIES:myContacts,Friends",
    `PHOTO:https://lh3.googleusercontent.com/contacts/photo-${i}`,
    "END:VCARD",
    "",
  ].join("\r\n");
