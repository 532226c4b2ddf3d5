-- A sandbox caller (POST /v1/sandbox/inbound) behaves as its request said: kept with its leg,
-- which any instance may run. Calls to our numbers are listed by direction.
ALTER TABLE calls ADD COLUMN caller_behaviour JSONB;
