import type { Context } from '../context.js';
import { type App, buildApp } from './build-app.js';

/** Builds the app and listens; returns the app and the address it got (PORT=0 picks a free port). */
export async function startApi(ctx: Context, port = ctx.config.port): Promise<{ app: App; url: string }> {
  const app = await buildApp(ctx);
  const address = await app.listen({ host: ctx.config.host, port });
  return { app, url: address };
}
