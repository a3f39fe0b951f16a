-- The hourly retention sweep deletes deliveries planned before a cut-off
-- (`deliveries::forget_processed`); without an index it read the
-- whole journal each hour to find none.
CREATE INDEX deliveries_processed ON deliveries (processed_at) WHERE processed_at IS NOT NULL;
