-- A leg's row is updated about five times in its first minutes (ringing, answered, hold,
-- completed…). Room left on each page keeps those updates HOT (no new entry in any of the
-- table's four indexes); full pages made a third of them write every index again.
ALTER TABLE calls SET (fillfactor = 80);
