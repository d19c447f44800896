-- A version held for a change made alongside this one; it changes nothing here.
SELECT 1;
