-- ISO 4217 currencies and ISO 3166-1 countries, shared by every tenant (read-only for them).
CREATE TABLE "currency" (
    "code" char(3) NOT NULL PRIMARY KEY,
    "name" varchar(64) NOT NULL,
    "minor_unit" smallint NOT NULL CHECK ("minor_unit" BETWEEN 0 AND 4)
);
CREATE TABLE "country" (
    "code" char(2) NOT NULL PRIMARY KEY,
    "name" varchar(100) NOT NULL,
    "currency_code" char(3) NOT NULL REFERENCES "currency" ("code")
);
