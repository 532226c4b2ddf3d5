-- A sandbox caller (POST /v1/sandbox/inbound) behaves as its request said: kept with its leg,
-- which any instance may run. Calls to our numbers are listed by direction.
ALTER TABLE calls ADD COLUMN caller_behaviour JSONB;

-- On the simulated network a number needs no trunk: the sandbox rings it.
ALTER TABLE numbers ALTER COLUMN trunk_id DROP NOT NULL;
