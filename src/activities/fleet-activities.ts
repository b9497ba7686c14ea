/**
 * The fleet reader: `watchFleet` (DescribeTaskQueue's pollers + the lease table's placement and load columns).
 *
 * Placeholder so the stream consumer's proxy types line up; the implementation replaces the body.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Client } from '@temporalio/client';
import type { FleetActivities, FleetView, WatchFleetInput } from '../fleet-types';

export interface FleetActivityDeps {
  dynamoDb: DynamoDBClient;
  /** Temporal client, to describe the shared task queue. */
  client?: Client;
}

export function createFleetActivities(deps: FleetActivityDeps): FleetActivities {
  void deps;
  return {
    async watchFleet(input: WatchFleetInput): Promise<FleetView> {
      void input;
      throw new Error('watchFleet: not implemented');
    },
  };
}
