-- Two statements: if the second fails (duplicate titles in a tenant), the first must not stay.
CREATE TABLE "note_tags" ("note_id" bigint NOT NULL REFERENCES "notes" ("id"), "tag" text NOT NULL);
ALTER TABLE "notes" ADD CONSTRAINT "notes_title_key" UNIQUE ("title");
